"""The options several commands share, declared once: a command names them after a `*` in its signature and is
decorated with `shared_options`, e.g. `def predict(images, *, weights, quiet)`."""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from .precision import check_precision_name

ZooFile = Annotated[Optional[Path], typer.Option(
    "--zoo", envvar="RDET_ZOO", help="A manifest of your own that adds or overrides entries (same schema as "
    "zoo.toml).", show_default=False)]
CacheDir = Annotated[Optional[Path], typer.Option(
    "--cache-dir", envvar="RDET_CACHE", help="Where weights are kept (default: the user cache directory).",
    show_default=False)]
Offline = Annotated[bool, typer.Option("--offline", help="Never touch the network (also RDET_OFFLINE=1).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout and nothing else.")]
Precision = Annotated[str, typer.Option(
    "--precision", help="fp32 (the published numbers), tf32 (NVIDIA Ampere or later: TF32 tensor cores), bf16, or "
    "fp16 (CUDA only): reduced precision for speed.", callback=check_precision_name)]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when present).")]
Autotune = Annotated[bool, typer.Option(
    "--autotune", help="CUDA: let cuDNN measure each convolution's algorithms on the first image of each size "
    "(seconds more then, often faster after: for many images of one size, a video or a stream).")]

Weights = Annotated[Optional[Path], typer.Option(
    "--weights", help="A checkpoint file to use instead of the zoo's (e.g. one written by `rdet train`), or a "
    ".onnx / .pt2 file written by `rdet export` (run by onnxruntime / torch).",
    show_default=False)]
RandomWeights = Annotated[bool, typer.Option(
    "--random-weights", help="Random weights, the head calibrated to a trained model's output load (about "
    "2000 candidates, 100 detections on a photo): nothing to download, meaningless detections, realistic speed.")]

DataRoot = Annotated[Optional[Path], typer.Option(
    "--data-root", help="A COCO directory: annotations/instances_{train,val}2017.json with train2017/ and val2017/.",
    show_default=False)]
Ann = Annotated[Optional[Path], typer.Option(
    "--ann", help="A COCO-format annotation file (any set; instead of --data-root).", show_default=False)]
Images = Annotated[Optional[Path], typer.Option(
    "--images", help="The directory holding --ann's images.", show_default=False)]

# Upper bounds of numeric options: past them a value is a typo that would overflow an index, a seed or a float32,
# or ask for more images per step or processes than any machine holds
MAX_BATCH = 1024  # images per forward pass or training step on one device
MAX_WORKERS = 256  # data-loading processes
MAX_BENCH_IMAGES = 1_000_000  # images one bench times per model: 500 times the published 2000
MAX_LR = 1e6  # far above any learning rate that trains (it diverges: exit 3); float32 overflows near 3.4e38

SHARED = {"zoo_file": (ZooFile, None), "cache_dir": (CacheDir, None), "offline": (Offline, False),
          "quiet": (Quiet, False), "as_json": (Json, False), "precision": (Precision, "fp32"),
          "device": (Device, "auto"), "autotune": (Autotune, False), "weights": (Weights, None),
          "random_weights": (RandomWeights, False), "data_root": (DataRoot, None), "ann": (Ann, None),
          "images": (Images, None)}


def shared_options(command):
    """Lets a command name its shared options after a `*` (`*, weights, quiet`): their declarations and
    defaults come from SHARED, so no command repeats them."""
    signature = inspect.signature(command, eval_str=True)
    params = []
    for p in signature.parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            if p.name not in SHARED:
                raise TypeError(f"{command.__name__}: no shared option is named {p.name!r}")
            annotation, default = SHARED[p.name]
            p = p.replace(annotation=annotation, default=default)
        params.append(p)

    @functools.wraps(command)
    def run(*args, **kwargs):
        return command(*args, **kwargs)

    run.__signature__ = signature.replace(parameters=params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run
