"""`rdet list` and `rdet info`: browse the zoo."""
from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from .common import fmt, load_zoo, out, print_json
from .options import shared_options
from .text import shown


def _cache(cache_dir):
    from zoo.cache import Cache

    return Cache(cache_dir)


@shared_options
def list_models(
    pattern: Optional[str] = typer.Argument(None, help="Only models whose name or alias matches this glob or "
                                            "substring."),
    *, zoo_file, cache_dir, as_json,
):
    """List the zoo's models with their published figures and whether their weights are cached.

    Examples:

      rdet list

      rdet list x101

      rdet list '*_2x' --json
    """
    from zoo.weights import checkpoint_file, is_cached

    zoo = load_zoo(zoo_file)
    cache = _cache(cache_dir)
    entries = zoo.filter(pattern)
    cached = {e.name: is_cached(checkpoint_file(e), cache) for e in entries}  # this entry's own file
    if as_json:
        print_json([{**e.to_dict(), "cached": cached[e.name], "path": str(cache.path(e.filename))}
                    for e in entries])
        return
    table = Table(title=f"RetinaNet zoo ({len(entries)} of {len(zoo)} models)", title_justify="left")
    for col, just in [("name", "left"), ("backbone", "left"), ("style", "left"), ("schd", "left"),
                      ("mem (GB)", "right"), ("fps", "right"), ("box AP", "right"), ("cached", "center")]:
        table.add_column(col, justify=just, no_wrap=col == "name")
    for e in entries:
        table.add_row(e.name, shown(e.backbone or f"R-{e.depth}"), e.style, shown(e.schedule), fmt(e.mem_gb),
                      fmt(e.fps), fmt(e.box_ap), "[green]yes[/green]" if cached[e.name] else "[dim]no[/dim]")
    out.print(table)
    if not entries:
        out.print(f"no model matches '{shown(pattern)}'")


@shared_options
def info(
    name: str = typer.Argument(..., help="A model name or its reference config name."),
    *, zoo_file, cache_dir, as_json,
):
    """Everything about one model: architecture, normalisation, schedule, published figures, weights.

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
    if as_json:
        print_json({**entry.to_dict(), "cached": cached, "path": str(path), "recorded_sha256": recorded})
        return
    if is_pinned(entry.sha256):
        digest = f"{entry.sha256} (pinned in the manifest)"
    elif recorded:
        digest = f"{recorded} (recorded at the first verified download; the manifest has {entry.sha256})"
    else:
        digest = f"{entry.sha256} (published prefix; the full digest is recorded at the first download)"
    arch = f"ResNet-{entry.depth}" if entry.groups == 1 else f"ResNeXt-{entry.depth} {entry.groups}x{entry.base_width}d"
    rows = [
        ("name", entry.name), ("aliases", ", ".join(entry.aliases) or "-"),
        ("backbone", f"{arch}, {entry.style} style, FPN P3-P7"),
        ("classes", str(entry.num_classes)),
        ("input", f"{'RGB' if entry.to_rgb else 'BGR'}, mean {list(entry.mean)}, std {list(entry.std)}"),
        ("schedule", f"{entry.schedule}: {entry.epochs} epochs, lr x0.1 at epochs {list(entry.lr_steps)}"),
        ("init", entry.pretrained_url or "-"),
        ("published", f"box AP {fmt(entry.box_ap)}, mem {fmt(entry.mem_gb)} GB, {fmt(entry.fps)} fps"),
        ("checkpoint", entry.url), ("sha256", digest), ("log", entry.log_url or "-"),
        ("cache", f"{path} ({'cached' if cached else 'not downloaded'})"),
        ("manifest", entry.source),
    ]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for k, v in rows:
        table.add_row(k, shown(v))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("list")(list_models)
    app.command("info")(info)
