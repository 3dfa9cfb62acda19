"""`rdet list` and `rdet info`: browse the zoo."""
from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from .common import Fail, fmt, load_zoo, out, print_json
from .options import shared_options
from .text import shown


def _cache(cache_dir):
    from zoo.cache import Cache

    return Cache(cache_dir)


def _json_entry(entry, cache) -> dict:
    """An entry for --json: AP as a fraction (0-1), as in every JSON rdet writes (the table shows percent)."""
    from zoo.weights import checkpoint_file, is_cached

    d = {**entry.to_dict(), "cached": is_cached(checkpoint_file(entry), cache), "path": str(cache.path(entry.filename))}
    d["box_ap"] = None if entry.box_ap is None else round(entry.box_ap / 100, 4)
    return d


def _cost(entry):
    """Parameters and FLOPs: the manifest's (counted once, see zoo.toml), else counted now (about a second)."""
    from retinanet.benchmark.flops import Cost, model_cost, padded_test_size

    if entry.params is not None and entry.gflops is not None:
        cfg = entry.model_config()
        return Cost(entry.params, round(entry.gflops * 1e9), padded_test_size(cfg))
    return model_cost(entry.model_config())


@shared_options
def list_models(
    pattern: Optional[str] = typer.Argument(None, help="Only models whose name or alias matches this glob or "
                                            "substring."),
    cost: bool = typer.Option(False, "--cost", help="Add parameters and GFLOPs at the test scale (from the "
                              "manifest, or counted now, about a second per model)."),
    *, zoo_file, cache_dir, as_json,
):
    """List the zoo's models with their published figures and whether their weights are cached.

    The name says the backbone, style and schedule (x101_64x4d_fpn_2x: ResNeXt-101 64x4d, pytorch style, 2x);
    `rdet info NAME` has the rest. --json gives AP as a fraction (0-1), like every JSON rdet writes.

    Examples:

      rdet list

      rdet list x101 --cost

      rdet list '*_2x' --json
    """
    from zoo.weights import checkpoint_file, is_cached

    zoo = load_zoo(zoo_file)
    cache = _cache(cache_dir)
    entries = zoo.filter(pattern)
    cached = {e.name: is_cached(checkpoint_file(e), cache) for e in entries}  # this entry's own file
    if not entries:
        if as_json:
            print_json([])
            return
        raise Fail(f"no model matches '{pattern}' (see `rdet list`)", code=1)
    costs = {e.name: _cost(e) for e in entries} if cost else {}
    if as_json:
        print_json([{**_json_entry(e, cache), **({"params": costs[e.name].params,
                                                    "gflops": round(costs[e.name].gflops, 1)} if cost else {})}
                    for e in entries])
        return
    table = Table(title=f"RetinaNet zoo ({len(entries)} of {len(zoo)} models)", title_justify="left")
    columns = [("name", "left"), ("box AP", "right"), ("fps", "right"), ("mem GB", "right")]
    if cost:
        columns += [("params M", "right"), ("GFLOPs", "right")]
    for col, just in columns + [("cached", "center")]:
        table.add_column(col, justify=just, no_wrap=True)
    for e in entries:
        extra = [f"{costs[e.name].params_m:.1f}", f"{costs[e.name].gflops:.0f}"] if cost else []
        table.add_row(shown(e.name), fmt(e.box_ap), fmt(e.fps), fmt(e.mem_gb), *extra,
                      "[green]yes[/green]" if cached[e.name] else "[dim]no[/dim]")
    out.print(table)
    if cost:
        w, h = costs[entries[0].name].input_size
        out.print(f"GFLOPs: one {w}x{h} forward pass; a multiply-add counts as 2")


@shared_options
def info(
    name: str = typer.Argument(..., help="A model name or its reference config name."),
    *, zoo_file, cache_dir, as_json,
):
    """Everything about one model: architecture, size, cost, schedule, published figures, weights.

    URLs are printed whole, never broken across lines, so that they can be copied.

    Examples:

      rdet info r50_fpn_1x

      rdet info retinanet_x101_64x4d_fpn_2x_coco --json
    """
    from zoo.checksum import is_pinned
    from zoo.weights import checkpoint_file, is_cached, recorded_digest

    entry = load_zoo(zoo_file).get(name)
    cache = _cache(cache_dir)
    path, cached = cache.path(entry.filename), is_cached(checkpoint_file(entry), cache)
    recorded = recorded_digest(checkpoint_file(entry), cache)  # the full digest of the first verified copy
    cost = _cost(entry)
    if as_json:
        print_json({**_json_entry(entry, cache), "recorded_sha256": recorded, **cost.to_dict()})
        return
    if is_pinned(entry.sha256):
        digest = f"{entry.sha256} (pinned in the manifest)"
    elif recorded:
        digest = f"{recorded} (recorded at the first verified download; the manifest has {entry.sha256})"
    else:
        digest = f"{entry.sha256} (published prefix; the full digest is recorded at the first download)"
    arch = f"ResNet-{entry.depth}" if entry.groups == 1 else f"ResNeXt-{entry.depth} {entry.groups}x{entry.base_width}d"
    w, h = cost.input_size
    rows = [
        ("name", entry.name), ("aliases", ", ".join(entry.aliases) or "-"),
        ("backbone", f"{arch}, {entry.style} style, FPN P3-P7"),
        ("classes", str(entry.num_classes)),
        ("size", f"{cost.params_m:.2f} M parameters, {cost.gflops:.1f} GFLOPs per {w}x{h} image "
                 "(a multiply-add counted as 2)"),
        ("input", f"{'RGB' if entry.to_rgb else 'BGR'}, mean {list(entry.mean)}, std {list(entry.std)}"),
        ("schedule", f"{entry.schedule}: {entry.epochs} epochs, lr x0.1 at epochs {list(entry.lr_steps)}"),
        ("published", f"box AP {fmt(entry.box_ap)} %, mem {fmt(entry.mem_gb)} GB, {fmt(entry.fps)} fps"),
        ("init", entry.pretrained_url or "-"),
        ("checkpoint", entry.url), ("sha256", digest), ("log", entry.log_url or "-"),
        ("cache", f"{path} ({'cached' if cached else 'not downloaded'})"),
        ("manifest", entry.source),
    ]
    for k, v in rows:  # plain lines: a terminal wraps a long URL without breaking it when copied
        out.print(f"[bold]{k:<11}[/bold]{shown(v)}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("list")(list_models)
    app.command("info")(info)
