"""A training run's directory: a new run starts in an empty (or missing) one, so that old epoch checkpoints,
an appended log and a latest.pth of another run are never mixed with the new run's; and one run at a time uses
it (its lock file), so that two runs started together cannot both find it empty, and --resume or --overwrite
cannot continue or delete a run that is still going. --overwrite deletes only what rdet train wrote, judged by
the files' contents, not their names alone."""
from __future__ import annotations

import fnmatch
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retinanet.atomic_write import temporary_target
from retinanet.errors import RetinaNetError, listed
from retinanet.process_lock import held_alone
from retinanet.training.run_log import LOG
from retinanet.training.train_state import INTERRUPTED, LATEST

LOCK = ".rdet-train.lock"  # held by the running rdet train, removed when it ends (retinanet.process_lock)

RUN_FILES = ("epoch_*.pth", LATEST, INTERRUPTED, LOG, "*.tmp")  # what a Trainer writes


def run_files(work_dir: Path) -> list[Path]:
    """The files of a run in `work_dir` (none when it does not exist)."""
    if not work_dir.is_dir():
        return []
    found = {p for pattern in RUN_FILES for p in work_dir.glob(pattern) if p.is_file() or p.is_symlink()}
    return sorted(found)


_PICKLE_LIMIT = 64 << 20  # a checkpoint's pickle (its tensors are separate entries) is far smaller than this


def _is_training_checkpoint(path: Path) -> bool:
    """Whether `path` is a torch zip archive whose pickle names train_state, which rdet train's checkpoints
    hold and others' (MMDetection's epoch_N.pth, a user's weights) do not. Read without unpickling."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.endswith("/data.pkl")]
            if len(pickles) != 1 or pickles[0].file_size > _PICKLE_LIMIT:
                return False
            with archive.open(pickles[0]) as f:
                return b"train_state" in f.read(_PICKLE_LIMIT)
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError):
        return False


def _is_run_log(path: Path) -> bool:
    """Whether `path` is empty or starts with the record every rdet train run logs first ({"mode": "start"})."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
        return not first or json.loads(first).get("mode") == "start"
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def written_by_rdet(path: Path) -> bool:
    """Whether a file named like a run's (run_files) holds what rdet train writes under that name, so that
    --overwrite may delete it: a symlink (latest.pth; deleting a link deletes no data), a checkpoint, the
    log, or a temporary file of one of these."""
    if path.is_symlink():
        return True
    target = temporary_target(path.name)
    if target is not None:
        return any(fnmatch.fnmatch(target, p) for p in RUN_FILES if p != "*.tmp")
    if path.name == LOG:
        return _is_run_log(path)
    return path.suffix == ".pth" and _is_training_checkpoint(path)


def earlier_run(work_dir: Path) -> list[Path]:
    """The files of an earlier run in `work_dir` that --overwrite deletes; RetinaNetError, deleting nothing,
    when a file named like one holds something else (another tool's epoch_12.pth, a note called x.tmp)."""
    files = run_files(work_dir)
    foreign = [p.name for p in files if not written_by_rdet(p)]
    if foreign:
        raise RetinaNetError(f"--overwrite: --work-dir {work_dir} holds {listed(foreign, 4)}, named like rdet "
                             "train's files but not written by it; nothing was deleted: move them away or choose "
                             "another --work-dir")
    return files


def check_place(work_dir: Path) -> None:
    """RetinaNetError unless `work_dir` is a directory or nothing yet."""
    if work_dir.exists() and not work_dir.is_dir():
        raise RetinaNetError(f"--work-dir {work_dir}: exists and is not a directory")


def check_work_dir(work_dir: Path, resume: bool, overwrite: bool) -> None:
    """RetinaNetError (one line) unless the run can go there: a directory (or nothing yet), empty unless resuming
    or overwriting."""
    if resume and overwrite:
        raise RetinaNetError("--resume continues the run in --work-dir and --overwrite deletes it: give one")
    check_place(work_dir)
    if overwrite:
        earlier_run(work_dir)
    if resume or overwrite or not work_dir.is_dir():
        return
    contents = sorted(p.name for p in work_dir.iterdir() if p.name != LOCK)
    if contents:
        raise RetinaNetError(f"--work-dir {work_dir} is not empty ({listed(contents, 4)}): --resume to continue that run, "
                             "--overwrite to replace it, or choose another --work-dir")
    if not os.access(work_dir, os.W_OK):
        raise RetinaNetError(f"--work-dir {work_dir}: not writable")


def clear_run(work_dir: Path) -> list[Path]:
    """Delete the files an earlier run wrote (for --overwrite); files of other kinds are left alone, and a file
    named like a run's that rdet did not write stops it before it deletes anything (earlier_run)."""
    removed = earlier_run(work_dir)
    for path in removed:
        path.unlink()
    return removed


@contextmanager
def claimed_work_dir(work_dir: Path, resume: bool, overwrite: bool) -> Iterator[None]:
    """Hold `work_dir` for this run (created when missing) and check it (check_work_dir) while holding it: a
    second run is refused in one line while the first goes on."""
    created = not work_dir.exists()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RetinaNetError(f"--work-dir {work_dir}: cannot create it ({e.strerror or e})") from None
    try:
        with held_alone(work_dir / LOCK, f"--work-dir {work_dir}: another rdet train is running there; wait for "
                                         "it to end (or stop it: Ctrl-C saves it for --resume), or choose another "
                                         "--work-dir"):
            check_work_dir(work_dir, resume, overwrite)
            if resume:  # temporary files of a killed run: no run holds the directory, none will finish them
                for litter in work_dir.glob("*.tmp"):
                    litter.unlink()
            yield
    finally:
        if created:  # a run that failed before writing anything leaves no empty directory behind
            try:
                work_dir.rmdir()
            except OSError:  # not empty: it has the run's files (or another run's lock)
                pass
