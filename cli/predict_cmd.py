"""`rdet predict`: detections for images, videos, URLs, list files and live streams, as a summary, JSON, or files.

Everything the user names (inputs, output directory, classes, threshold) is checked before any download or model
load, so a typo costs a second, not a download."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from .common import Fail, WeightsSource, err, load_detector, parse_size, print_json
from .options import MAX_BATCH, shared_options

DEFAULT_MODEL = "r50_fpn_1x"
LOW_SCORE_THR = 0.01  # below this the NMS gets up to 1000 candidates per level and an image takes minutes on a CPU


def check_score_thr(score_thr: float) -> None:
    if not 0 < score_thr <= 1:
        raise Fail(f"--score-thr must be above 0 and at most 1 (scores are fractions), not {score_thr:g}")
    if score_thr < LOW_SCORE_THR:
        err.print(f"[yellow]warning:[/yellow] --score-thr {score_thr:g} keeps thousands of candidate boxes: "
                  "expect minutes per image on a CPU (the reference evaluates at 0.05)", highlight=False)


def split_model(inputs: list[str], model: Optional[str], zoo_file) -> tuple[str, list[str]]:
    """The model named first among the positional arguments (`rdet predict r50_fpn_1x img.jpg`), unless --model
    names it (the older spelling) or the first argument is an existing path."""
    if model is not None or not inputs or os.path.exists(inputs[0]):
        return model or DEFAULT_MODEL, inputs
    from zoo.errors import UnknownModelError

    from .common import load_zoo

    try:
        load_zoo(zoo_file).get(inputs[0])
    except UnknownModelError:
        return DEFAULT_MODEL, inputs
    return inputs[0], inputs[1:]


def resolve(inputs: list[str], source: Optional[str]):
    """The inputs as retinanet.data.sources.Input, the bundled photo when none is given; Fail for what names
    nothing (before any download)."""
    from retinanet.assets import SAMPLE_IMAGE
    from retinanet.data.sources import Input, SourceError, check_source, is_stream, is_url, resolve_inputs

    from .predict_outputs import shown_input

    if source is not None:
        if inputs:
            raise Fail("--source reads one stream; give images and videos without --source")
        shown = shown_input(source)
        if not (is_stream(source) or is_url(source) or os.path.exists(source)):
            raise Fail(f"--source {shown}: no such file, webcam index or stream URL")
        try:
            check_source(source)  # a camera or stream that cannot be opened fails before the model loads
        except SourceError as e:
            raise Fail(str(e).replace(source, shown)) from None
        return [Input("stream", source)]
    try:
        return resolve_inputs(inputs) if inputs else [Input("image", str(SAMPLE_IMAGE))]
    except SourceError as e:
        raise Fail(str(e)) from None


@shared_options
def predict(
    inputs: Optional[List[str]] = typer.Argument(None, metavar="[MODEL] [INPUTS]...", help="A zoo model name "
                                                 "(default r50_fpn_1x), then images, videos, directories, globs, "
                                                 "http(s) URLs or .txt files listing them (default: the bundled "
                                                 "photo).", show_default=False),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model, as an option (older spelling).",
                                        show_default=False),
    source: Optional[str] = typer.Option(None, "--source", help="A live stream instead: a webcam index (0), an "
                                         "rtsp:// URL, or a video file read as a stream. Ctrl-C ends it.",
                                         show_default=False),
    score_thr: float = typer.Option(0.3, "--score-thr", help="Keep detections scoring above this (0-1; the "
                                    "Python API's default is the reference's 0.05)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Keep only these classes: names or 0-based "
                                          "labels, comma-separated (person,car or 0,2).", show_default=False),
    vid_stride: int = typer.Option(1, "--vid-stride", min=1, help="Detect on every Nth frame of videos and "
                                   "streams."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write annotated images and videos, "
                                           "predictions.json and coco_results.json here.", show_default=False),
    save_txt: bool = typer.Option(False, "--save-txt", help="Also write OUT/labels/NAME.txt: one line per box, "
                                  "`label x_center y_center width height` normalised to 0-1."),
    save_conf: bool = typer.Option(False, "--save-conf", help="Add the score to each --save-txt line."),
    save_crops: bool = typer.Option(False, "--save-crops", help="Also write each box as an image, "
                                    "OUT/crops/CLASS/NAME_K.jpg."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, max=MAX_BATCH, help="Images per forward pass."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model first (pays off over many "
                                 "images; its compile time is reported apart from the time per image)."),
    size: Optional[str] = typer.Option(None, "--size", hidden=True, help="Test scale WxH instead of 1333x800, "
                                       "for quick checks (detections differ from the reference's)."),
    *, weights, device, autotune, random_weights, precision, as_json, zoo_file, cache_dir, offline, quiet,
):
    """Detect objects in images, videos and streams with a zoo model.

    Examples:

      rdet predict                          # r50_fpn_1x on the bundled photo

      rdet predict street.jpg --out results/

      rdet predict x101_64x4d_fpn_2x photos/ list.txt --score-thr 0.5 --json

      rdet predict clip.mp4 --vid-stride 5 --out results/ --classes person,car

      rdet predict https://example.org/photo.jpg --save-txt --out results/

      rdet predict --source 0               # the webcam; Ctrl-C stops
    """
    from .predict_outputs import Outputs, check_out_dir, parse_classes
    from .predict_run import detect_frames, print_summary
    from .provenance import provenance, random_weights_notice

    check_score_thr(score_thr)
    scale = parse_size(size)
    if (save_txt or save_crops or save_conf) and out_dir is None:
        raise Fail("--save-txt, --save-conf and --save-crops write into --out DIR: give one")
    name, inputs = split_model(list(inputs or []), model, zoo_file)
    from zoo import get as zoo_entry

    entry = zoo_entry(name, zoo_file)  # an unknown name fails here, before anything else
    found = resolve(inputs, source)
    check_out_dir(out_dir, found)
    names_known = weights is None and (entry.class_names is not None or entry.num_classes == 80)
    labels = parse_classes(classes, entry.model_config().names) if names_known else None
    source_of_weights = WeightsSource(zoo_file, cache_dir, offline, weights, random_weights)
    entry, det = load_detector(name, source_of_weights, device, quiet or as_json, precision, compile, autotune,
                               **({"scale": scale} if scale else {}))
    if not names_known:  # the checkpoint names the classes
        labels = parse_classes(classes, det.class_names)
    if random_weights:
        random_weights_notice()
    streaming = source is not None
    from retinanet.data.sources import frames

    from zoo.remote import fetch_image_bytes

    doc = {"schema": "rdet-predict/1", "model": entry.name, "score_thr": score_thr,
           "classes": None if labels is None else [det.class_names[i] for i in sorted(labels)],
           "provenance": provenance(entry, det.device, precision, det.cfg.scale, weights, random_weights)}
    with Outputs(out_dir, doc, save_txt, save_conf, save_crops) as outputs:
        run = detect_frames(det, frames(found, lambda url: fetch_image_bytes(url, offline=offline or None),
                                        vid_stride),
                            outputs, score_thr, labels, 1 if streaming else batch_size,
                            show=not as_json and not quiet, json_lines=as_json and streaming, stoppable=streaming)
    if as_json and not streaming:
        print_json({**doc, "images": run.records})
    elif not as_json and not quiet:
        print_summary(entry.name, run, score_thr, out_dir, det.compile_seconds)
    if random_weights and not as_json and not quiet:
        random_weights_notice()
    if run.failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
