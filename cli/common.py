"""What every command shares: the options, the consoles, the zoo, and turning errors into one line."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from retinanet.config import check_size
from retinanet.errors import ArgumentError

# Results go to stdout; progress, tables meant for people and errors go to stderr when --json is on,
# so that `--json` output is exactly one JSON document.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

class Fail(Exception):
    """Raised by commands to stop with a one-line message and an exit code."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


@contextmanager
def errors_said_by_rank_0():
    """Under torchrun every rank meets the same bad input: rank 0 alone prints it, all exit with its code."""
    from retinanet.errors import RetinaNetError
    from zoo.errors import ZooError

    from retinanet.launch_env import is_main_process

    try:
        yield
    except (Fail, RetinaNetError, ZooError) as e:
        if is_main_process():
            raise
        raise typer.Exit(getattr(e, "code", None) or getattr(e, "exit_code", 2)) from None


def load_zoo(zoo_file: Optional[Path]):
    from zoo.manifest import Zoo

    return Zoo.load(zoo_file)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def fmt(value, spec: str = "") -> str:
    """A published figure, or '-' where the table has none."""
    return "-" if value is None else format(value, spec)


@dataclass(frozen=True)
class WeightsSource:
    """Where a command's weights come from: --weights FILE, --random-weights, or the zoo's verified cache
    (--zoo, --cache-dir, --offline)."""

    zoo_file: Optional[Path] = None
    cache_dir: Optional[Path] = None
    offline: bool = False
    weights: Optional[Path] = None
    random_weights: bool = False


def load_detector(name: str, source: WeightsSource, device: str, quiet: bool, precision: str = "fp32",
                  compile: bool = False, autotune: bool = False, **overrides):
    """(entry, Detector) for a zoo name: weights from --weights, else the verified cached checkpoint; `overrides`
    are ModelConfig fields (e.g. scale)."""
    import zoo

    entry = zoo.get(name, source.zoo_file)
    det = zoo.load(name, weights=source.weights, device=device, zoo_file=source.zoo_file,
                   cache_dir=source.cache_dir, offline=source.offline or None, quiet=quiet,
                   random_weights=source.random_weights, precision=precision, compile=compile, autotune=autotune,
                   **overrides)
    return entry, det


def coco_split(root: Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image directory) of a COCO 2017 split ("train", "val") under a --data-root."""
    return root / "annotations" / f"instances_{split}2017.json", root / f"{split}2017"


def coco_files(data_root: Optional[Path], ann: Optional[Path], images: Optional[Path], split: str, *,
               images_flag: str = "--images", need_images: bool = True) -> Optional[tuple[Path, Optional[Path]]]:
    """The one rule for a dataset on the command line: --data-root (the COCO layout of `split`) or --ann FILE
    with its images directory, never both; None when neither is given (the command says what it needs)."""
    if data_root is None and ann is None and images is None:
        return None
    if data_root is not None and (ann is not None or images is not None):
        raise Fail(f"give either --data-root (COCO layout) or --ann FILE with {images_flag} DIR, not both")
    if data_root is not None:
        return coco_split(data_root, split)
    if ann is None or (images is None and need_images):
        raise Fail(f"--ann and {images_flag} go together")
    return ann, images


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """A hidden --size WIDTHxHEIGHT (quick checks at a smaller scale than 1333x800)."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise Fail(f"--size must be WIDTHxHEIGHT (e.g. 1333x800), not '{text}'") from None
    try:
        check_size((w, h), "--size")  # the engine's rule (retinanet.config), said as a command-line error
    except ArgumentError as e:
        raise Fail(str(e)) from None
    return w, h
