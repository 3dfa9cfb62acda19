"""The options several commands share, declared once: `name: Weights = None` in a command's signature."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
    "--precision", help="fp32 (the published numbers), bf16, or fp16 (CUDA only): reduced-precision autocast for "
    "speed.")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when present).")]

Weights = Annotated[Optional[Path], typer.Option(
    "--weights", help="A checkpoint file to use instead of the zoo's (e.g. one written by `rdet train`).",
    show_default=False)]
RandomWeights = Annotated[bool, typer.Option(
    "--random-weights", help="Randomly initialised weights: nothing to download, meaningless detections (for "
    "trying the tool offline; speed and memory do not depend on the values).")]

DataRoot = Annotated[Optional[Path], typer.Option(
    "--data-root", help="A COCO directory: annotations/instances_{train,val}2017.json with train2017/ and val2017/.",
    show_default=False)]
Ann = Annotated[Optional[Path], typer.Option(
    "--ann", help="A COCO-format annotation file (any set; instead of --data-root).", show_default=False)]
Images = Annotated[Optional[Path], typer.Option(
    "--images", help="The directory holding --ann's images.", show_default=False)]
