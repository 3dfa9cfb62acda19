"""Issue #14 findings 5 (a full disk during a training checkpoint) and 12 (--resume from a checkpoint missing
train_state keys): one-line errors, no .tmp left behind, latest.pth intact, data flushed before the rename."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from retinanet.errors import CheckpointError
from retinanet.training.train_state import LATEST, point_latest, read_resume_state, write_atomically

ROOT = Path(__file__).resolve().parents[1]

# A checkpoint cycle in a process whose files may not grow past 1 MB (RLIMIT_FSIZE: what a full disk does to a
# write), then a 4 MB checkpoint: the write must fail cleanly.
_FULL_DISK = """
import resource, sys, torch
from pathlib import Path
from retinanet.errors import CheckpointError
from retinanet.training.train_state import point_latest, write_atomically
work = Path(sys.argv[1])
write_atomically({"w": torch.zeros(1000)}, work / "epoch_1.pth")
point_latest(work, work / "epoch_1.pth")
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    write_atomically({"w": torch.zeros(1 << 20)}, work / "epoch_2.pth")
except CheckpointError as e:
    print("CheckpointError:", e)
"""


def test_5_full_disk_during_a_checkpoint_is_one_line_and_leaves_latest_intact(tmp_path):
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    [line] = r.stdout.splitlines()
    assert line.startswith("CheckpointError: cannot write") and "epoch_2.pth" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth", LATEST]  # no .tmp left
    assert torch.load(tmp_path / LATEST, weights_only=True)["w"].shape == (1000,)


def test_5_checkpoint_data_is_flushed_before_it_takes_its_name(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", Path(b).name)) or real_replace(a, b))
    write_atomically({"w": torch.zeros(3)}, tmp_path / "epoch_1.pth")
    assert events.index("fsync") < events.index(("replace", "epoch_1.pth"))


def test_5_a_failing_write_leaves_no_tmp(tmp_path, monkeypatch):
    def disk_full(obj, f):
        Path(f).write_bytes(b"x" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        write_atomically({"w": 1}, tmp_path / "epoch_1.pth")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("drop", ["epoch", "iter_in_epoch", "iter", "seed", "rng"])
def test_12_resume_from_a_checkpoint_missing_train_state_keys_is_one_line(tmp_path, drop):
    state = {"epoch": 1, "iter_in_epoch": 0, "iter": 10, "global_batch": 2, "lr": 0.01, "seed": 0, "rng": {}}
    del state[drop]
    torch.save({"state_dict": {}, "optimizer": {}, "train_state": state}, tmp_path / "epoch_1.pth")
    point_latest(tmp_path, tmp_path / "epoch_1.pth")
    with pytest.raises(CheckpointError, match=f"train_state.*'{drop}'"):
        read_resume_state(tmp_path / LATEST)
