"""`rdet predict`: detections for images, as a summary, JSON, or annotated copies."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .common import Fail, WeightsSource, err, load_detector, out, print_json
from .globbing import recursive_glob
from .options import shared_options
from .outputs import output_dir, writing
from .text import shown

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"}


def expand_images(args: list[str]) -> list[str]:
    """Files as given, directories as their image files (sorted), globs as their matches (sorted)."""
    paths: list[str] = []
    for arg in args:
        if os.path.isdir(arg):
            paths += sorted(str(p) for p in Path(arg).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif any(c in arg for c in "*?[") and not os.path.exists(arg):
            matches = recursive_glob(arg)  # symlink loops end, each file once
            if not matches:
                raise Fail(f"no file matches '{arg}'")
            paths += [m for m in matches if os.path.isfile(m)]
        else:
            paths.append(arg)  # a missing file is reported with the others' results, not up front
    return list(dict.fromkeys(paths))


def _unique_name(path: str, used: set) -> str:
    stem, suffix = Path(path).stem, Path(path).suffix.lower()
    suffix = suffix if suffix in {".jpg", ".jpeg", ".png"} else ".png"
    name, n = f"{stem}{suffix}", 1
    while name in used:
        n += 1
        name = f"{stem}_{n}{suffix}"
    used.add(name)
    return name


@shared_options
def predict(
    images: Optional[List[str]] = typer.Argument(None, help="Image files, directories or globs (default: the "
                                                 "bundled sample photo).", show_default=False),
    model: str = typer.Option("r50_fpn_1x", "--model", "-m", help="Zoo model name or reference config name."),
    score_thr: float = typer.Option(0.3, "--score-thr", help="Keep detections scoring above this."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write annotated copies and detections.json here.",
                                           show_default=False),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images per forward pass."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model first (pays off over many "
                                 "images; its compile time is reported apart from the time per image)."),
    *, weights, device, random_weights, precision, as_json, zoo_file, cache_dir, offline, quiet,
):
    """Detect objects in images with a zoo model.

    Examples:

      rdet predict                                  # the bundled sample photo

      rdet predict street.jpg --out results/

      rdet predict photos/ 'more/*.png' --model x101_64x4d_fpn_2x --score-thr 0.5 --json

      rdet predict photos/ --precision bf16 --compile   # faster, within the fast-path tolerances
    """
    from retinanet.assets import SAMPLE_IMAGE

    paths = expand_images(images) if images else [str(SAMPLE_IMAGE)]
    if not paths:
        raise Fail("no images found in the given paths")
    if out_dir is not None:
        output_dir(out_dir)  # before the model loads: a bad --out fails now, not after the work
    source = WeightsSource(zoo_file, cache_dir, offline, weights, random_weights)
    entry, det = load_detector(model, source, device, quiet or as_json, precision, compile)
    show = not as_json and not quiet
    results, failures, coco, used_names = [], [], [], set()
    timings = []
    for r in det.predict_files(paths, score_thr=score_thr, batch_size=batch_size):
        if r.error is not None:
            failures.append(r.path)
            err.print(f"[red]skipped[/red] {shown(r.error)}", highlight=False)
            continue
        d = r.detections
        timings.append(r.seconds)
        results.append({"path": r.path, "width": d.width, "height": d.height, "detections": d.to_list()})
        if out_dir is not None:
            from retinanet.inference.visualize import draw_detections

            name = _unique_name(r.path, used_names)
            with writing(out_dir / name):
                draw_detections(r.image.copy(), d.boxes, d.scores, d.labels, d.class_names).save(out_dir / name)
            coco += [{"file_name": r.path, "image_id": len(results) - 1, **c} for c in d.to_coco(len(results) - 1)]
        if show:
            counts = Counter(d.names)
            summary = ", ".join(f"{n} {name}" for name, n in counts.most_common()) or "nothing"
            out.print(f"{shown(r.path)}: {shown(summary)} ({r.seconds * 1000:.0f} ms)", highlight=False)
    if out_dir is not None:
        from retinanet.atomic_write import write_text_atomically

        with writing(out_dir / "detections.json"):
            write_text_atomically(out_dir / "detections.json", json.dumps(coco))
    if as_json:
        print_json({"model": entry.name, "images": results})
    elif show:
        _summary(entry.name, results, failures, timings, out_dir, det.compile_seconds)
    if failures:
        raise typer.Exit(1)


def _summary(model, results, failures, timings, out_dir, compile_seconds):
    total = Counter(d["class"] for r in results for d in r["detections"])
    table = Table(title=f"{model}: {len(results)} images, {sum(total.values())} detections", title_justify="left")
    table.add_column("class")
    table.add_column("count", justify="right")
    for name, n in total.most_common():
        table.add_row(shown(name), str(n))
    out.print(table)
    if timings:
        out.print(f"mean time per image: {sum(timings) / len(timings) * 1000:.0f} ms")
    if compile_seconds:
        out.print(f"torch.compile: {compile_seconds:.1f} s, not counted in the time per image")
    if out_dir is not None:
        out.print(f"annotated images and detections.json written to {shown(out_dir)}", highlight=False)
    if failures:
        out.print(f"[red]{len(failures)} image(s) could not be read[/red]")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
