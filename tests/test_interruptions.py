"""Runs that overlap or are stopped never lose or corrupt data: SIGTERM and SIGHUP stop `rdet` as Ctrl-C does,
two writers of one file each rename a whole file, one `rdet train` at a time holds a work directory, and a
resume after kill -9 mid-write goes on from what is left (a cut-off log line, temporary files)."""
import json
import os
import signal
import subprocess
import time

import pytest
import torch

from http_server import payload
from retinanet.atomic_write import atomic_path
from retinanet.errors import CheckpointError
from retinanet.process_lock import acquire
from retinanet.training.stop_request import StopRequest
from retinanet.training.train_state import read_resume_state
from retinanet.training.run_log import cut_back_log
from retinanet.training.work_dir import LOCK, earlier_run
from shapes_data import write_shapes
from tiny_zoo import NAME, rdet_command, run_rdet, write_tiny_zoo


def test_two_atomic_writes_of_one_file_at_once_each_rename_a_whole_file(tmp_path):
    target = tmp_path / "model.onnx"
    with atomic_path(target) as first:
        first.write_text("first " * 1000)
        with atomic_path(target) as second:  # another process writing the same file meanwhile
            assert second != first and second.name.endswith(".tmp")
            second.write_text("second " * 1000)
        assert target.read_text() == "second " * 1000
    assert target.read_text() == "first " * 1000  # the last rename wins, and it is whole
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_log_is_cut_back_to_the_checkpoint_resumed_from_and_loses_its_cut_off_line(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [{"mode": "start", "config": "x" * 100_000}, {"mode": "train", "global_iter": 1},
             {"mode": "train", "global_iter": 2}, {"mode": "val", "epoch": 1, "iter": 2},
             {"mode": "train", "global_iter": 3}, {"mode": "diverged", "global_iter": 4}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines) + "not JSON, kept\n" + '{"mode": "train", "gl')
    assert cut_back_log(log, 2) == 3  # iterations 3 and 4 are trained again; the cut-off line
    assert log.read_text() == "".join(json.dumps(x) + "\n" for x in lines[:4]) + "not JSON, kept\n"
    assert cut_back_log(log, 2) == 0 and cut_back_log(tmp_path / "none.jsonl", 0) == 0


def test_a_second_ctrl_c_while_the_first_is_saved_waits_a_third_stops_and_nohup_is_kept():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        stop = StopRequest()
        with stop.installed():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)  # impatient, while the checkpoint is written
            assert stop.requested and stop.signum == signal.SIGTERM  # the first one says how to exit
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs at the next bytecode; never reached
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_latest_pth_pointing_at_a_missing_checkpoint_says_what_to_do(tmp_path):
    (tmp_path / "latest.pth").symlink_to("epoch_3.pth")
    with pytest.raises(CheckpointError, match=r"latest.pth points at epoch_3.pth, which is missing; point it at "
                                              r"the checkpoint to resume from \(ln -sf epoch_N.pth"):
        read_resume_state(tmp_path / "latest.pth")


@pytest.fixture(scope="module")
def zoo_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    manifest, _ = write_tiny_zoo(root)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RDET_")},
            "RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}


def _train_args(data, work, *extra):
    ann, images = data
    return ["train", NAME, "--ann", ann, "--images", images, "--work-dir", work, "--device", "cpu", "--init", "none",
            "--size", "64x64", "--workers", "0", "--quiet", *extra]


def test_a_second_train_in_a_work_dir_in_use_is_refused_and_changes_nothing(tmp_path, zoo_env):
    data = write_shapes(tmp_path / "data", images=2, portrait_every=0)
    work = tmp_path / "work"
    work.mkdir()
    release = acquire(work / LOCK, 0, lambda: None)  # a run started a moment ago: nothing written yet
    try:
        for extra in ((), ("--resume",), ("--overwrite",)):
            if extra:
                (work / "log.jsonl").write_text('{"mode": "start"}\n')  # ... and now it has
            r = run_rdet(*_train_args(data, work, "--epochs", "1", *extra), env_extra=zoo_env)
            assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
            assert r.stderr.strip().splitlines() == [f"error: --work-dir {work}: another rdet train is running "
                                                     "there; wait for it to end (or stop it: Ctrl-C saves it for "
                                                     "--resume), or choose another --work-dir"]
    finally:
        release()
    assert sorted(p.name for p in work.iterdir()) == ["log.jsonl"]  # --overwrite deleted nothing

def test_a_train_that_fails_before_writing_leaves_no_empty_work_dir(tmp_path, zoo_env, capsys, monkeypatch):
    from cli_inprocess import rdet_here

    data = write_shapes(tmp_path / "data", images=2, portrait_every=0)
    r = rdet_here(capsys, monkeypatch, *_train_args(data, tmp_path / "new", "--precision", "fp16"),
                  env={k: zoo_env[k] for k in ("RDET_ZOO", "RDET_CACHE")})
    assert r.returncode == 2 and "fp16 runs on CUDA only" in r.stderr, r.stderr
    assert not (tmp_path / "new").exists()  # created to be held while the run was checked, then removed


def _spawn_train(args, env):
    # a runner started in the background (or under nohup) passes ignored signals on: give rdet the defaults; and
    # a process group of its own, as a job's (Slurm, systemd and a closed terminal signal all its processes)
    def defaults():
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
    return subprocess.Popen(rdet_command() + [str(a) for a in args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=defaults, start_new_session=True)


def _train_records(log):
    return [json.loads(line) for line in log.read_text().splitlines() if '"train"' in line] if log.exists() else []


def _stop_after(proc, log, count, signum, group=False, timeout=240):
    deadline = time.monotonic() + timeout
    while len(_train_records(log)) < count:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    if group:  # the data-loading workers too
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    return proc.communicate(timeout=240)


def test_sigterm_and_sighup_save_like_ctrl_c_and_a_resume_after_kill_9_goes_on(tmp_path, zoo_env):
    data = write_shapes(tmp_path / "data", images=16, seed=4)  # 8 iterations per epoch
    work = tmp_path / "work"
    args = _train_args(data, work, "--epochs", "2", "--seed", "3", "--lr", "0.004", "--warmup-iters", "5")
    proc = _spawn_train([*args, "--workers", "1"], zoo_env)
    _, stderr = _stop_after(proc, work / "log.jsonl", 2, signal.SIGTERM, group=True)
    assert proc.returncode == 143 and "--resume" in stderr, stderr
    assert stderr.strip().startswith("stopped by SIGTERM: stopped at epoch"), stderr
    assert os.readlink(work / "latest.pth") == "interrupted.pth" and not (work / LOCK).exists()
    first = torch.load(work / "interrupted.pth", weights_only=True)["train_state"]["iter"]
    assert {p.name for p in earlier_run(work)} == {"interrupted.pth", "latest.pth", "log.jsonl"}  # --overwrite's

    proc = _spawn_train([*args, "--resume"], zoo_env)
    _, stderr = _stop_after(proc, work / "log.jsonl", first + 2, signal.SIGHUP)
    assert proc.returncode == 129 and stderr.strip().startswith("stopped by SIGHUP: stopped at epoch"), stderr
    second = torch.load(work / "interrupted.pth", weights_only=True)["train_state"]["iter"]
    assert second > first

    # what kill -9 in the middle of writes leaves: iterations logged past the checkpoint, a log line cut off,
    # temporary files of a checkpoint and of latest.pth's link
    with open(work / "log.jsonl", "a") as log:
        log.write(json.dumps({"mode": "train", "global_iter": second + 1, "loss": 1.0}) + "\n")
        log.write('{"mode": "train", "epoch": 2, "it')
    (work / "epoch_2.pth.1a2b3c4d.tmp").write_bytes(b"half a checkpoint")
    (work / "latest.pth.5e6f7a8b.tmp").symlink_to("epoch_2.pth")
    (work / LOCK).write_text("")  # its lock file, no longer held by anyone
    r = run_rdet(*args, "--resume", env_extra=zoo_env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["epoch_1.pth", "epoch_2.pth", "latest.pth", "log.jsonl"]
    records = _train_records(work / "log.jsonl")  # every line is whole JSON again
    assert sorted(x["global_iter"] for x in records) == list(range(1, 17))  # each iteration logged once


@pytest.mark.parametrize("signum, code, said", [(signal.SIGTERM, 143, "stopped by SIGTERM"),
                                               (signal.SIGINT, 130, "interrupted")])  # Ctrl-C was silent
def test_sigterm_stops_a_download_as_ctrl_c_does(tmp_path, http_server, zoo_env, signum, code, said):
    data, sha = payload()
    url = http_server.add("/w/tiny18_20260101-00000000.pth", data, throttle=0.05, chunk=16384)
    manifest = tmp_path / "zoo.toml"
    manifest.write_text(f'schema = 1\n[[model]]\nname = "slow"\ndepth = 18\nstyle = "pytorch"\nnum_classes = 3\n'
                        f'url = "{url}"\nsha256 = "{sha}"\n')
    cache = tmp_path / "cache"
    proc = _spawn_train(["download", "slow"], {**zoo_env, "RDET_ZOO": str(manifest), "RDET_CACHE": str(cache)})
    part = cache / "tiny18_20260101-00000000.pth.part"
    deadline = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size >= 3 * 16384):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == said
    assert sorted(p.name for p in cache.iterdir()) == [part.name]  # the .part kept for a resume, no lock file
    assert data.startswith(part.read_bytes())


def test_a_second_predict_or_zoo_check_into_one_directory_is_refused_while_the_first_writes(tmp_path, zoo_env,
                                                                                           capsys, monkeypatch):
    from cli_inprocess import rdet_here
    from cli.outputs import OUTPUT_LOCK, held_output_dir

    env = {k: zoo_env[k] for k in ("RDET_ZOO", "RDET_CACHE")}
    ann, images = write_shapes(tmp_path / "data", images=1)
    out = tmp_path / "out"
    out.mkdir()
    with held_output_dir(out):  # the first run, writing
        r = rdet_here(capsys, monkeypatch, "predict", NAME, images / "shape_0000.png", "--out", out, "--device",
                      "cpu", "--size", "64x64", "--quiet", env=env)
        assert (r.returncode, r.stderr.strip()) == (2, f"error: --out {out}: another rdet is writing there; wait "
                                                       "for it to end, or give another --out")
        r = rdet_here(capsys, monkeypatch, "eval", "--all", "--ann", ann, "--images", images, "--report", out,
                      "--device", "cpu", "--workers", "0", "--offline", "--quiet", env=env)
        assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (
            2, f"error: --report {out}: another rdet is writing there; wait for it to end, or give another --report")
        assert [p.name for p in out.iterdir()] == [OUTPUT_LOCK]
    r = rdet_here(capsys, monkeypatch, "predict", NAME, images / "shape_0000.png", "--out", out, "--device", "cpu",
                  "--size", "64x64", env=env)
    assert r.returncode == 0, r.stderr
    assert {"predictions.json", "coco_results.json"} <= {p.name for p in out.iterdir()}
    assert not (out / OUTPUT_LOCK).exists()


def test_a_predict_stopped_midway_marks_its_document_and_leaves_no_coco_results_to_trust(tmp_path):
    from cli.predict_outputs import COCO_RESULTS_FILE, PREDICTIONS_FILE, Outputs

    out = tmp_path / "out"
    out.mkdir()
    (out / COCO_RESULTS_FILE).write_text("[]")  # an earlier run's, whose images this run overwrites
    done = {"path": "a.png", "frame": None, "width": 4, "height": 4, "error": None, "detections": []}
    with pytest.raises(KeyboardInterrupt), Outputs(out, {"schema": "rdet-predict/1"}) as outputs:
        outputs.records.append(done)
        raise KeyboardInterrupt  # Ctrl-C or SIGTERM before the other inputs were read
    document = json.loads((out / PREDICTIONS_FILE).read_text())
    assert document == {"schema": "rdet-predict/1", "interrupted": True, "images": [done]}
    assert sorted(p.name for p in out.iterdir()) == [PREDICTIONS_FILE]


def test_an_image_stopped_while_its_files_are_written_is_not_in_the_interrupted_document(tmp_path, monkeypatch):
    """A sweep's finding: predictions.json of a stopped run listed the image whose files were being written."""
    from types import SimpleNamespace

    from cli.predict_outputs import PREDICTIONS_FILE, Outputs
    from retinanet.stop_signals import Stopped

    def written(self, result, dets, rec):
        if result.path == "b.jpg":
            raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(Outputs, "_write", written)
    records = [{"path": p, "error": None, "detections": []} for p in ("a.jpg", "b.jpg")]
    (tmp_path / "out").mkdir()  # as predict's check_out_dir leaves it
    with pytest.raises(Stopped), Outputs(tmp_path / "out", {"schema": "x"}) as outputs:
        for rec in records:
            outputs.add(SimpleNamespace(path=rec["path"]), object(), rec)
    doc = json.loads((tmp_path / "out" / PREDICTIONS_FILE).read_text())
    assert doc["interrupted"] is True and [r["path"] for r in doc["images"]] == ["a.jpg"]
