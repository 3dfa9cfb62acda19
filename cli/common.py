"""What every command shares: the options, the consoles, the zoo, and turning errors into one line."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

# Results go to stdout; progress, tables meant for people and errors go to stderr when --json is on,
# so that `--json` output is exactly one JSON document.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ZooOption = typer.Option(None, "--zoo", envvar="RDET_ZOO", help="A manifest of your own that adds or overrides "
                         "entries (same schema as zoo.toml).", show_default=False)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout and nothing else.")
CacheDirOption = typer.Option(None, "--cache-dir", envvar="RDET_CACHE", help="Where weights are kept "
                              "(default: the user cache directory).", show_default=False)
OfflineOption = typer.Option(False, "--offline", help="Never touch the network (also RDET_OFFLINE=1).")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress output.")
PrecisionOption = typer.Option("fp32", "--precision", help="fp32 (the published numbers), bf16, or fp16 "
                                "(CUDA only): reduced-precision autocast for speed.")
DeviceOption = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (CUDA when present).")


class Fail(Exception):
    """Raised by commands to stop with a one-line message and an exit code."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def load_zoo(zoo_file: Optional[Path]):
    from zoo.manifest import Zoo

    return Zoo.load(zoo_file)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def fmt(value, spec: str = "") -> str:
    """A published figure, or '-' where the table has none."""
    return "-" if value is None else format(value, spec)


def load_detector(name: str, weights: Optional[Path], device: str, zoo_file: Optional[Path],
                  cache_dir: Optional[Path], offline: bool, quiet: bool, random_weights: bool = False,
                  precision: str = "fp32", compile: bool = False):
    """(entry, Detector) for a zoo name: weights from --weights, else the verified cached checkpoint."""
    import zoo

    entry = zoo.get(name, zoo_file)
    det = zoo.load(name, weights=weights, device=device, zoo_file=zoo_file, cache_dir=cache_dir,
                   offline=offline or None, quiet=quiet, random_weights=random_weights,
                   precision=precision, compile=compile)
    return entry, det


def coco_split(root: Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image directory) of a COCO 2017 split ("train", "val") under a --data-root."""
    return root / "annotations" / f"instances_{split}2017.json", root / f"{split}2017"


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """A hidden --size WIDTHxHEIGHT (quick checks at a smaller scale than 1333x800)."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise Fail(f"--size must be WIDTHxHEIGHT (e.g. 1333x800), not '{text}'") from None
    if min(w, h) < 32:
        raise Fail(f"--size {text}: both sides must be at least 32 pixels")
    return w, h
