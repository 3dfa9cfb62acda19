"""`rdet export`: a zoo model as ONNX or an ExportedProgram, and the proof that the file detects the same."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import Fail, err, out, parse_size, print_json
from .outputs import output_file
from .options import shared_options
from .text import shown

@shared_options
def export_model(
    name: str = typer.Argument(..., help="Zoo model name.", show_default=False),
    fmt: str = typer.Option("onnx", "--format", help="onnx (run by onnxruntime and others) or exported-program "
                            "(a torch.export .pt2)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="The file to write (default: NAME.onnx or "
                                            "NAME.pt2 here).", show_default=False),
    dynamic: bool = typer.Option(False, "--dynamic", help="Any input height and width (default: the fixed padded "
                                 "1333x800 input, 800x1344)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, or fp16 (half the size; checked with wider "
                                  "tolerances)."),
    with_postprocess: bool = typer.Option(False, "--with-postprocess", help="Put anchor decoding, the score "
                                          "threshold, per-level top-k and class-wise NMS in the graph too."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the proof that the export detects the same."),
    size: Optional[str] = typer.Option(None, "--size", hidden=True, help="Test scale WxH instead of 1333x800, "
                                       "for quick checks."),
    *, weights, device, as_json, zoo_file, cache_dir, offline, quiet,
):
    """Export a zoo model to ONNX or torch.export, then prove it detects what the PyTorch model detects.

    The proof runs the file (onnxruntime, or torch for .pt2) and the PyTorch model on the bundled photo and a few
    generated images and compares every detection: boxes within 0.01 px, scores within 1e-4, the same labels.
    It exits 1 when they differ more.

    Examples:

      rdet export r50_fpn_1x                                   # r50_fpn_1x.onnx, fixed 1333x800 input

      rdet export x101_32x4d_fpn_2x --dynamic --with-postprocess --out x101.onnx

      rdet export r50_fpn_1x --format exported-program --weights my.pth --json

      rdet predict photo.jpg --model r50_fpn_1x --weights r50_fpn_1x.onnx    # run it with the usual commands
    """
    import zoo
    from retinanet.export.metadata import FORMATS, PRECISIONS, export_format

    if fmt not in FORMATS:
        raise Fail(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if precision not in PRECISIONS:  # before the checkpoint is fetched
        raise Fail(f"--precision must be one of {', '.join(PRECISIONS)} for an export, not '{precision}'")
    if weights is not None and export_format(weights):
        raise Fail(f"--weights {weights}: an exported file; export from a checkpoint (.pth)")
    entry = zoo.get(name, zoo_file)
    scale = parse_size(size)
    cfg = entry.model_config(**({"scale": scale} if scale else {}))
    out_file = out_file or Path(f"{entry.name}{FORMATS[fmt]}")
    if out_file.suffix.lower() != FORMATS[fmt]:
        raise Fail(f"--out {out_file}: a {fmt} file must end in {FORMATS[fmt]}")
    # before the model loads: under a file, in a read-only directory, or a link to the checkpoint, is one line
    output_file(out_file, inputs=(weights, zoo_file))
    from retinanet.export.exporter import export

    reference, digest = _reference(entry, cfg, weights, device, cache_dir, offline, quiet or as_json)
    say = (lambda msg: None) if quiet or as_json else (lambda msg: err.print(shown(msg), highlight=False))
    say(f"exporting {entry.name} to {out_file} ({fmt}, {'dynamic' if dynamic else 'fixed'} input, {precision}"
        f"{', with post-processing' if with_postprocess else ''})")
    start = time.perf_counter()
    info = export(reference.model, reference.cfg, out_file, fmt=fmt, dynamic=dynamic, precision=precision,
                  with_postprocess=with_postprocess, model_name=entry.name, weights_sha256=digest)
    seconds = time.perf_counter() - start
    say(f"wrote {out_file} ({out_file.stat().st_size / 2**20:.1f} MiB) in {seconds:.0f} s")
    report = None
    if not no_check:
        from retinanet.export.check import check_export
        from retinanet.export.detector import ExportedDetector

        say("checking it against PyTorch on the bundled photo and generated images")
        report = check_export(ExportedDetector(out_file, device=str(reference.device)), reference)
    result = {"model": entry.name, "out": str(out_file), "format": fmt, "bytes": out_file.stat().st_size,
              "input_size": list(info.input_size) if info.input_size else None, "dynamic": dynamic,
              "precision": precision, "with_postprocess": with_postprocess, "weights_sha256": digest,
              "export_seconds": round(seconds, 2), "check": report.to_dict() if report else None}
    if as_json:
        print_json(result)
    elif report is not None:
        out.print(_table(entry.name, report))
    if report is not None and not report.passed:
        if not as_json:
            err.print(f"[red]error:[/red] {shown(out_file)} does not detect what the PyTorch model detects (see the "
                      "table); do not deploy it", highlight=False)
        raise typer.Exit(1)


def _reference(entry, cfg, weights, device, cache_dir, offline, quiet):
    """(the plain fp32 PyTorch detector to export and to compare with, the checkpoint's SHA-256)."""
    from retinanet import Detector
    from zoo.cache import Cache
    from zoo.checksum import sha256_file
    from zoo.weights import ensure_weights

    path = weights if weights is not None else ensure_weights(entry, Cache(cache_dir), offline=offline or None,
                                                              quiet=quiet)
    # fast=False: the unfused model, which traces into portable operators (the fast path's oneDNN calls do not)
    return Detector(cfg, path, device=device, fast=False), sha256_file(path)


def _table(name: str, report) -> Table:
    table = Table(title=f"{name}: export vs PyTorch ({report.runtime}; tolerances: boxes {report.box_tol} px, "
                        f"scores {report.score_tol:g})")
    for col in ("image", "PyTorch dets", "export dets", "max box diff (px)", "max score diff", "labels", "result"):
        table.add_column(col, justify="left" if col == "image" else "right")
    for r in report.rows:
        same_count = r.torch_detections == r.export_detections
        table.add_row(shown(r.image), str(r.torch_detections), str(r.export_detections),
                      f"{r.max_box_diff:.2g}" if same_count else "-", f"{r.max_score_diff:.2g}" if same_count else "-",
                      "same" if r.labels_agree else "differ", "[green]pass[/green]" if r.passed else "[red]FAIL[/red]")
    return table


def register(app: typer.Typer) -> None:
    app.command("export")(export_model)
