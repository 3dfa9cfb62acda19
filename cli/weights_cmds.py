"""`rdet download`, `rdet import` and `rdet cache list|verify|rm`: the weights cache."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .common import Fail, err, load_zoo, out, print_json
from .options import shared_options
from .tables import show_table
from .text import shown

NamesArgument = typer.Argument(None, help="Model names or aliases.", show_default=False)
AllOption = typer.Option(False, "--all", help="Every model of the zoo.")
PretrainedOption = typer.Option(False, "--pretrained", help="The ImageNet backbone file the model trains from "
                                "(for `rdet train`), not the detector checkpoint.")


def _cache(cache_dir):
    from zoo.cache import Cache

    return Cache(cache_dir)


def _entries(zoo, names: Optional[List[str]], all_models: bool) -> list:
    """The entries named (aliases resolved, duplicates dropped), or all of them."""
    if all_models:
        return list(zoo)
    if not names:
        raise Fail("name one or more models, or pass --all")
    return list({e.name: e for e in map(zoo.get, names)}.values())


def _report_error(name: str, e: Exception) -> None:
    err.print(f"[red]error:[/red] {shown(name)}: {shown(e)}", highlight=False)


def _size(n) -> str:
    from zoo.progress import human

    return "-" if n is None else human(n)


# ---------------------------------------------------------------------------------------------------- download

def _download_one(wf, cache, offline: Optional[bool], quiet: bool) -> dict:
    """Fetch one file, catching its failure so that the other downloads go on."""
    from zoo.download import cached
    from zoo.errors import ZooError
    from zoo.weights import ensure

    path = cache.path(wf.filename)
    row = {"name": wf.model, "kind": wf.kind, "file": wf.filename, "path": str(path)}
    try:
        if cached(wf.url, wf.sha256, path):  # re-hashed: a corrupted copy is set aside and fetched again
            return {**row, "size": path.stat().st_size, "status": "already cached"}
        path = ensure(wf, cache, offline=offline, quiet=quiet)
    except ZooError as e:
        _report_error(wf.model, e)
        return {**row, "size": None, "status": "failed", "error": str(e)}
    return {**row, "size": path.stat().st_size, "status": "downloaded"}


def _download_table(rows: list[dict]) -> Table:
    colour = {"downloaded": "green", "already cached": "dim", "failed": "red"}
    table = Table(title="downloads", title_justify="left")
    for col, just in [("model", "left"), ("file", "left"), ("size", "right"), ("status", "left")]:
        table.add_column(col, justify=just, no_wrap=col == "model")
    for r in rows:
        model = r["name"] + (" (backbone)" if r["kind"] == "pretrained" else "")
        table.add_row(shown(model), shown(r["file"]), _size(r["size"]), f"[{colour[r['status']]}]{r['status']}[/]")
    return table


@shared_options
def download(
    names: Optional[List[str]] = NamesArgument,
    all_models: bool = AllOption,
    pretrained: bool = typer.Option(False, "--pretrained", help="Also fetch each model's ImageNet backbone file "
                                    "(needed by `rdet train`)."),
    *, zoo_file, cache_dir, offline, quiet, as_json,
):
    """Download checkpoints into the cache, verified against the manifest's SHA-256.

    An interrupted download resumes where it stopped, and network errors are retried.

    A failing model does not stop the others; the command exits 1 at the end if any failed.

    RDET_MIRROR replaces the download.openmmlab.com prefix; HTTPS_PROXY and friends are honoured.

    Examples:

      rdet download r50_fpn_1x

      rdet download --all --quiet

      rdet download x101_64x4d_fpn_1x --pretrained --json

      RDET_MIRROR=https://mirror.example.org/openmmlab rdet download r50_fpn_2x
    """
    from zoo.weights import checkpoint_file, pretrained_file

    zoo = load_zoo(zoo_file)
    entries = _entries(zoo, names, all_models)
    cache = _cache(cache_dir)
    files = [checkpoint_file(e) for e in entries]
    if pretrained:  # one row per backbone file, which several models may share
        backbones = (pretrained_file(e) for e in entries if e.pretrained_url)
        files += {wf.filename: wf for wf in backbones}.values()
    rows = [_download_one(wf, cache, offline or None, quiet) for wf in files]  # None: RDET_OFFLINE decides
    if as_json:
        print_json(rows)
    else:
        out.print(_download_table(rows))
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(1)


@shared_options
def import_checkpoint(
    name: str = typer.Argument(..., help="The model the file belongs to (name or alias)."),
    file: Path = typer.Argument(..., help="The file, downloaded by other means.", show_default=False),
    pretrained: bool = PretrainedOption,
    *, zoo_file, cache_dir, quiet, as_json,
):
    """Put a checkpoint downloaded by other means into the cache, once its SHA-256 matches the manifest.

    The file is copied under its published name; a bad file is rejected and the cache left as it was.

    Examples:

      rdet import r50_fpn_1x retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth

      rdet import --pretrained r50_fpn_1x resnet50-19c8e357.pth
    """
    from zoo.weights import import_weights

    entry = load_zoo(zoo_file).get(name)
    path = import_weights(entry, file, _cache(cache_dir), pretrained=pretrained, quiet=quiet)
    if as_json:
        print_json({"name": entry.name, "file": path.name, "path": str(path), "size": path.stat().st_size})
    else:
        out.print(f"imported {shown(file)} as {shown(path)}", highlight=False)


# ---------------------------------------------------------------------------------------------------- rdet cache

cache_app = typer.Typer(name="cache", help="Inspect the weights cache: list, verify, rm.", no_args_is_help=True)


def _label(item) -> str:
    names = ", ".join(item.names) or "-"
    return names + (" (backbone)" if item.refs and item.refs[0].kind == "pretrained" else "")


@cache_app.command("list")
@shared_options
def cache_list(

    *, zoo_file, cache_dir, quiet, as_json,
):
    """List the cached files: model, file, size, and whether each is verified.

    A file takes its name only after its checksum matched; a partial one is a download to resume.

    Examples:

      rdet cache list

      rdet cache list --json --cache-dir /data/weights
    """
    from zoo.weights import BAD, COMPLETE, FOREIGN, PARTIAL, cache_contents

    cache = _cache(cache_dir)
    items = cache_contents(load_zoo(zoo_file), cache)
    if as_json:
        print_json([i.to_dict() for i in items])
        return
    state = {COMPLETE: "[green]yes[/green]", PARTIAL: "[yellow]partial (resumable)[/yellow]",
             BAD: "[red]no: failed verification, set aside[/red]",
             FOREIGN: "[yellow]another manifest's file of this name[/yellow]"}
    table = Table(title=f"{shown(cache.root)}: {len(items)} files, {_size(sum(i.size for i in items))}",
                  title_justify="left")
    for col, just in [("model", "left"), ("file", "left"), ("size", "right"), ("verified", "left")]:
        table.add_column(col, justify=just)
    for i in items:
        table.add_row(shown(_label(i)), shown(i.path.name), _size(i.size),
                      state.get(i.state, "[dim]not a zoo file[/dim]"))
    show_table(table, f"{shown(cache.root)}: no cached files")


@cache_app.command("verify")
@shared_options
def cache_verify(
    names: Optional[List[str]] = typer.Argument(None, help="Only these models' files (default: everything).",
                                                show_default=False),
    *, zoo_file, cache_dir, quiet, as_json,
):
    """Re-hash the cached files and compare with the manifest; exits 1 when any file is bad.

    Examples:

      rdet cache verify

      rdet cache verify r50_fpn_1x --json
    """
    from zoo.weights import PARTIAL, cache_contents, verify_file

    zoo = load_zoo(zoo_file)
    wanted = {e.name for e in _entries(zoo, names, False)} if names else None
    items = [i for i in cache_contents(zoo, _cache(cache_dir))
             if i.state != PARTIAL and (wanted is None or wanted & set(i.names))]
    verdicts = []
    for item in items:
        if not quiet:
            err.print(f"verifying {shown(item.path.name)} ({_size(item.size)})", highlight=False)
        verdicts.append(verify_file(item))
    bad = [v for v in verdicts if v.ok is False]
    if as_json:
        print_json([v.to_dict() for v in verdicts])
    else:
        good = sum(v.ok is True for v in verdicts)
        table = Table(title=f"checked {len(verdicts)} files: {good} ok, {len(bad)} bad", title_justify="left")
        for col in ("model", "file", "status"):
            table.add_column(col)
        for v in verdicts:
            status = "[dim]not this zoo's file[/dim]" if v.ok is None else "[green]ok[/green]" if v.ok else \
                f"[red]BAD[/red] {shown(v.message)}"
            table.add_row(shown(_label(v.file)), shown(v.file.path.name), status)
        show_table(table, "no cached files to verify")
    if bad:
        err.print(f"[red]error:[/red] {len(bad)} bad file(s), set aside and never used; `rdet download` fetches "
                  "them again", highlight=False)
        raise typer.Exit(1)


@cache_app.command("rm")
@shared_options
def cache_rm(
    names: Optional[List[str]] = NamesArgument,
    all_models: bool = typer.Option(False, "--all", help="Every zoo file in the cache, partial downloads included "
                                    "(files the zoo does not name are left alone)."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Also remove the models' ImageNet backbone "
                                    "files (shared between models)."),
    *, zoo_file, cache_dir, quiet, as_json,
):
    """Delete models' files from the cache, with their partial downloads.

    Examples:

      rdet cache rm r50_fpn_1x

      rdet cache rm r50_fpn_1x --pretrained

      rdet cache rm --all
    """
    from zoo.weights import clear_cache, remove_weights

    zoo = load_zoo(zoo_file)
    cache = _cache(cache_dir)
    failed = []
    if all_models:
        removed = clear_cache(zoo, cache, failed=failed)  # a busy file does not stop the others
    else:
        entries = _entries(zoo, names, False)
        removed = [p for e in entries for p in remove_weights(e, cache, pretrained=pretrained and
                                                              bool(e.pretrained_url))]
    if as_json:
        print_json([str(p) for p in removed])
    else:
        for p in removed:
            out.print(f"removed {shown(p)}", highlight=False)
        if not removed and not failed:
            out.print("nothing to remove")
    for e in failed:
        err.print(f"[red]error:[/red] {shown(e)}", highlight=False)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("download")(download)
    app.command("import")(import_checkpoint)
    app.add_typer(cache_app, name="cache")
