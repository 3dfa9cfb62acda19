"""`rdet doctor`: is this installation ready? torch and the GPU, image and video libraries, the weights cache, the
network to the weights host, and optionally a dataset, in one table (or --json) with an exit code."""
from __future__ import annotations

import typer
from rich.table import Table

from .common import out, print_json
from .options import shared_options
from .text import shown
from .doctor_checks import FAIL, INFO, OK, WARN, Check, cache_checks, dataset_checks, image_library_checks, \
    network_checks, scorer_checks, torch_checks

_STYLE = {OK: "green", INFO: "cyan", WARN: "yellow", FAIL: "red"}


@shared_options
def doctor(
    verify: bool = typer.Option(False, "--verify", help="Re-hash every cached weights file (about a second per "
                                "150 MB)."),
    *, data_root, zoo_file, cache_dir, offline, as_json,
):
    """Check the installation: torch and the GPU, image libraries, the weights cache, the network.

    torch, CUDA, cuDNN and bf16; OpenCV (and its video I/O) and Pillow; pycocotools (and faster-coco-eval);
    the weights cache (writable, free space, left-over locks, files, re-hashed with --verify); the weights host
    or mirror, proxies and offline mode; a COCO directory with --data-root.

    Exit code 0 when nothing failed (warnings allowed), 1 when a check failed.

    Examples:

      rdet doctor

      rdet doctor --data-root /data/coco --verify

      rdet doctor --json
    """
    from retinanet.version import package_version

    import platform

    checks = [Check("rdet", OK, f"{package_version()} on Python {platform.python_version()}")]
    checks += torch_checks() + image_library_checks() + scorer_checks()
    checks += cache_checks(cache_dir, zoo_file, verify)
    checks += network_checks(zoo_file, offline)
    if data_root is not None:
        checks += dataset_checks(data_root)
    failed = [c for c in checks if c.status == FAIL]
    if as_json:
        print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        table = Table(box=None, pad_edge=False, show_header=True)
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("detail", overflow="fold")
        for c in checks:
            table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status}[/]", shown(c.detail))
        out.print(table)
        out.print(f"[red]{len(failed)} check(s) failed[/red]" if failed else "[green]ready[/green]")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
