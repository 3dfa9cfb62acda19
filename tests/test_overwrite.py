"""`rdet train --overwrite` deletes what an earlier rdet train run wrote and nothing else: a file named like a run's
(epoch_12.pth, log.jsonl, x.tmp) that holds something else stops it, in one line, before anything is deleted."""
import json
import os

import pytest
import torch

from retinanet.errors import RetinaNetError
from retinanet.training.train_state import LATEST, point_latest, write_atomically
from retinanet.training.work_dir import check_work_dir, clear_run


def _earlier_run(work):
    """The files an interrupted rdet train leaves: two checkpoints, latest.pth, the log, a temporary file."""
    work.mkdir(exist_ok=True)
    for epoch in (1, 2):
        write_atomically({"meta": {}, "state_dict": {"w": torch.zeros(2)}, "optimizer": {},
                          "train_state": {"epoch": epoch, "iter": 3 * epoch}}, work / f"epoch_{epoch}.pth")
    point_latest(work, work / "epoch_2.pth")
    (work / "log.jsonl").write_text(json.dumps({"mode": "start", "config": {}}) + "\n" +
                                    json.dumps({"mode": "train", "epoch": 1, "iter": 1}) + "\n")
    (work / "epoch_3.pth.0a1b2c3d.tmp").write_bytes(b"half a checkpoint")  # a killed run's
    (work / "notes.md").write_text("mine")


def test_overwrite_deletes_the_earlier_runs_files_and_keeps_the_rest(tmp_path):
    _earlier_run(tmp_path / "work")
    check_work_dir(tmp_path / "work", resume=False, overwrite=True)
    removed = sorted(p.name for p in clear_run(tmp_path / "work"))
    assert removed == ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth.0a1b2c3d.tmp", LATEST, "log.jsonl"]
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["notes.md"]


def test_a_copied_latest_and_an_empty_log_are_the_runs_too(tmp_path):
    work = tmp_path / "work"
    _earlier_run(work)
    (work / LATEST).unlink()
    (work / LATEST).write_bytes((work / "epoch_2.pth").read_bytes())  # where symlinks fail, point_latest copies
    (work / "log.jsonl").write_text("")  # a run stopped before its first record
    assert len(clear_run(work)) == 5


FOREIGN = {
    "MMDetection's checkpoint": ("epoch_12.pth", lambda p: torch.save({"meta": {"epoch": 12}, "optimizer": {},
                                                                      "state_dict": {"w": torch.ones(2)}}, p)),
    "not a zip": ("epoch_4.pth", lambda p: p.write_bytes(b"my weights, in my own format")),
    "weights named interrupted": ("interrupted.pth", lambda p: torch.save({"w": torch.ones(2)}, p)),
    "another tool's log": ("log.jsonl", lambda p: p.write_text('{"mode": "train", "epoch": 1}\n')),
    "a log that is not JSON": ("log.jsonl", lambda p: p.write_text("my notes\n")),
    "a note ending in .tmp": ("draft.tmp", lambda p: p.write_text("mine")),
    "a temporary name of another file": ("notes.md.0a1b2c3d.tmp", lambda p: p.write_text("mine")),
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_a_file_named_like_a_runs_but_not_rdets_stops_overwrite_before_any_deletion(tmp_path, kind):
    work = tmp_path / "work"
    _earlier_run(work)
    name, write = FOREIGN[kind]
    write(work / name)
    before = {p.name: (p.read_bytes() if not p.is_symlink() else os.readlink(p)) for p in work.iterdir()}
    for attempt in (lambda: check_work_dir(work, resume=False, overwrite=True), lambda: clear_run(work)):
        with pytest.raises(RetinaNetError) as e:
            attempt()
        [line] = str(e.value).splitlines()
        assert name in line and "nothing was deleted" in line, line
    assert {p.name: (p.read_bytes() if not p.is_symlink() else os.readlink(p)) for p in work.iterdir()} == before
