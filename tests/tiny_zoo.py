"""A one-entry user manifest with a tiny depth-18 model whose checkpoint is a real file served by file:// URL,
so CLI tests run every command end to end (download, verify, load) without the network."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import torch

from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint

NAME = "tiny18"
CLASSES = ("circle", "square", "triangle")


def write_tiny_zoo(directory: Path, cls_bias: float = 0.0, seed: int = 0) -> tuple[Path, Path]:
    """(manifest path, checkpoint path). `cls_bias` 0 makes every anchor score ~0.5, so there are detections."""
    directory.mkdir(parents=True, exist_ok=True)
    sd = reference_state_dict(depth=18, num_classes=len(CLASSES), seed=seed)
    sd["bbox_head.retina_cls.bias"] = torch.full_like(sd["bbox_head.retina_cls.bias"], cls_bias)
    ckpt = directory / "tiny18_20260101-00000000.pth"
    save_reference_checkpoint(ckpt, sd, classes=CLASSES)
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    final = ckpt.with_name(f"tiny18_20260101-{sha[:8]}.pth")
    ckpt.rename(final)
    manifest = directory / "tiny.toml"
    manifest.write_text("schema = 1\n" + zoo_row(NAME, final, box_ap=12.5, extra='aliases = ["retinanet_tiny18"]'))
    return manifest, final


def zoo_row(name: str, checkpoint: Path, box_ap: float | None = None, extra: str = "") -> str:
    """One [[model]] table for a tiny18-architecture checkpoint served by file:// URL (a missing file gets a made-up
    checksum: its weights cannot be obtained)."""
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:8] if checkpoint.is_file() else "0" * 8
    published = "" if box_ap is None else f"box_ap = {box_ap!r}\n"
    return f"""[[model]]
name = "{name}"
{extra}
depth = 18
style = "pytorch"
num_classes = {len(CLASSES)}
{published}fps = 100.0
mem_gb = 0.5
url = "{checkpoint.as_uri()}"
sha256 = "{sha}"
"""


def rdet_command() -> list[str]:
    """The installed console script when it is on PATH (as after `pip install .`), else the module."""
    exe = shutil.which("rdet", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return [exe] if exe else [sys.executable, "-m", "cli.main"]


def run_rdet(*args, env_extra: dict | None = None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDET_")}
    env.update(env_extra or {})
    return subprocess.run(rdet_command() + [str(a) for a in args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for torchrun's rendezvous in the multi-process tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
