"""Failing fast and clearly (#17 findings 2, 3, 5 and 6): what the user names is checked before any download or
model load, and bad values are one line with a non-zero exit, never a traceback."""
import pytest

import zoo
from cli_inprocess import rdet_here
from retinanet.errors import RetinaNetError
from tiny_zoo import NAME, write_tiny_zoo


def _one_line(r, code, *words):
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.strip().splitlines() if not line.startswith("warning")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def served_zoo(tiny, tmp_path, http_server, rdet_env, monkeypatch):
    """A tiny zoo whose checkpoint is served over HTTP, and a zoo.load that fails the test if it is reached."""
    bundled, ckpt = tiny
    url = http_server.add(f"/w/{ckpt.name}", ckpt.read_bytes())
    manifest = tmp_path / "zoo.toml"
    manifest.write_text(bundled.read_text().replace(ckpt.as_uri(), url))
    monkeypatch.setattr(zoo, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    image = tmp_path / "img.png"
    image.write_bytes(b"")  # never read: every case below fails before
    return {"RDET_ZOO": str(manifest), "RDET_CACHE": str(rdet_env)}, image, http_server


@pytest.mark.parametrize("args, words", [
    (["nosuch.jpg"], ["nosuch.jpg: no such file"]),
    (["IMG", "--out", "IMG"], ["--out", "not a directory"]),
    (["IMG", "--classes", "persn,car"], ["unknown class 'persn'", "person"]),  # COCO names: checked up front
    (["IMG", "--score-thr", "2"], ["--score-thr", "at most 1"]),
    (["IMG", "--score-thr", "0"], ["--score-thr", "above 0"]),
    (["IMG", "--save-txt"], ["--out"]),
    (["nomatch/*.jpg"], ["no file matches"]),
    (["--source", "nosuch.mp4"], ["nosuch.mp4", "no such file"]),
    (["--source", "rtsp://127.0.0.1:1/live"], ["rtsp://127.0.0.1:1/live", "cannot open"]),  # refused
    (["0"], ["--source 0"]),
    (["IMG", "--precision", "fp8"], ["--precision must be one of fp32, tf32, bf16, fp16, not 'fp8'"]),
])
def test_predict_checks_what_it_is_given_before_any_download(served_zoo, capsys, monkeypatch, args, words):
    env, image, server = served_zoo
    args = [str(image) if a == "IMG" else a for a in args]
    model = "r50_fpn_1x" if "--classes" in args else NAME
    r = rdet_here(capsys, monkeypatch, "predict", model, *args, env=env)
    _one_line(r, 2, *words)
    assert server.requests == []


def test_eval_output_paths_of_the_wrong_kind_are_one_line_before_any_work(served_zoo, tmp_path, capsys, monkeypatch):
    from shapes_data import write_shapes

    env, _, server = served_zoo
    ann, images = write_shapes(tmp_path / "data", images=1)
    base = ["eval", NAME, "--ann", ann, "--images", images, "--device", "cpu"]
    _one_line(rdet_here(capsys, monkeypatch, *base, "--csv", tmp_path, env=env), 2,
              f"--csv {tmp_path}: is a directory; give a file name")
    _one_line(rdet_here(capsys, monkeypatch, *base, "--plots", ann, env=env), 2,
              f"--plots {ann}: exists and is not a directory; give a directory")
    _one_line(rdet_here(capsys, monkeypatch, "eval", "--all", "--ann", ann, "--images", images, "--report", ann,
                        env=env), 2, f"--report {ann}: exists and is not a directory; give a directory")
    # a sweep's finding: --out and --csv overwrote the annotation or results file being read (exit 0)
    kept = ann.read_bytes()
    _one_line(rdet_here(capsys, monkeypatch, *base, "--out", ann, env=env), 2, f"--out {ann}: is the input")
    _one_line(rdet_here(capsys, monkeypatch, *base, "--csv", ann, env=env), 2, f"--csv {ann}: is the input")
    results = tmp_path / "results.json"
    results.write_text("[]")
    linked = tmp_path / "linked.json"
    linked.symlink_to(results)
    _one_line(rdet_here(capsys, monkeypatch, "eval", "--results", results, "--ann", ann, "--per-class", "--csv",
                        linked, env=env), 2, f"--csv {linked}: is the input {results}")
    assert ann.read_bytes() == kept and results.read_text() == "[]" and server.requests == []


def test_a_precision_the_device_cannot_run_is_refused_before_the_weights_are_downloaded(tiny, tmp_path, http_server,
                                                                                       rdet_env, capsys,
                                                                                       monkeypatch):
    bundled, ckpt = tiny
    url = http_server.add(f"/w/{ckpt.name}", ckpt.read_bytes())
    manifest = tmp_path / "zoo.toml"
    manifest.write_text(bundled.read_text().replace(ckpt.as_uri(), url))
    env = {"RDET_ZOO": str(manifest), "RDET_CACHE": str(rdet_env)}
    image = tmp_path / "img.png"
    image.write_bytes(b"")
    _one_line(rdet_here(capsys, monkeypatch, "predict", NAME, image, "--device", "cpu", "--precision", "fp16",
                        env=env), 2, "fp16 runs on CUDA only")
    _one_line(rdet_here(capsys, monkeypatch, "predict", NAME, image, "--device", "cpu", "--precision", "tf32",
                        env=env), 2, "tf32 is a CUDA tensor-core mode")
    with pytest.raises(RetinaNetError, match="fp16 runs on CUDA only"):
        zoo.load(NAME, zoo_file=manifest, device="cpu", precision="fp16")
    from shapes_data import write_shapes

    ann, images = write_shapes(tmp_path / "data", images=1)
    _one_line(rdet_here(capsys, monkeypatch, "train", NAME, "--ann", ann, "--images", images, "--init", "zoo",
                        "--device", "cpu", "--precision", "fp16", "--work-dir", tmp_path / "w", env=env), 2,
              "fp16 runs on CUDA only")
    _one_line(rdet_here(capsys, monkeypatch, "eval", "--all", "--ann", ann, "--images", images, "--device", "cpu",
                        "--precision", "fp16", env=env), 2, "fp16 runs on CUDA only")  # was: one error per row
    assert http_server.requests == []  # was: the checkpoint was downloaded first


@pytest.mark.parametrize("args, words", [
    (["--precision", "bf16"], "--precision must be one of fp32, fp16 for an export, not 'bf16'"),
    (["--format", "tflite"], "--format must be one of onnx, exported-program"),
    (["--out", "model.txt"], "must end in .onnx"),
])
def test_export_checks_its_options_before_fetching_the_checkpoint(served_zoo, tmp_path, capsys, monkeypatch, args,
                                                                  words):
    env, _, server = served_zoo
    monkeypatch.chdir(tmp_path)
    _one_line(rdet_here(capsys, monkeypatch, "export", NAME, *args, env=env), 2, words)
    assert server.requests == []  # was, for --precision bf16: the checkpoint was downloaded first


def test_a_very_low_score_threshold_warns_of_the_cost(served_zoo, capsys, monkeypatch):
    env, _, _ = served_zoo
    r = rdet_here(capsys, monkeypatch, "predict", NAME, "nosuch.jpg", "--score-thr", "0.001", env=env)
    assert "warning" in r.stderr and "minutes per image" in r.stderr and r.returncode == 2


def test_train_refuses_a_used_or_unusable_work_dir_before_loading_anything(served_zoo, tmp_path, capsys,
                                                                          monkeypatch):
    from shapes_data import write_shapes

    env, _, server = served_zoo
    ann, images = write_shapes(tmp_path / "data", images=1)
    used = tmp_path / "used"
    used.mkdir()
    (used / "epoch_1.pth").write_bytes(b"old run")
    (used / "notes.md").write_text("mine")
    base = ["train", NAME, "--ann", ann, "--images", images, "--device", "cpu", "--work-dir"]
    _one_line(rdet_here(capsys, monkeypatch, *base, used, env=env), 2, "not empty", "--resume", "--overwrite")
    _one_line(rdet_here(capsys, monkeypatch, *base, ann, env=env), 2, "not a directory")
    _one_line(rdet_here(capsys, monkeypatch, *base, used, "--resume", "--overwrite", env=env), 2, "give one")
    # epoch_1.pth holds no rdet checkpoint: --overwrite must not delete it (tests/test_overwrite.py has the rest)
    _one_line(rdet_here(capsys, monkeypatch, *base, used, "--overwrite", env=env), 2, "epoch_1.pth",
              "nothing was deleted")
    assert server.requests == []
    assert (used / "epoch_1.pth").read_bytes() == b"old run" and (used / "notes.md").read_text() == "mine"


def test_device_names_weights_files_and_keywords_are_one_line_errors(tmp_path, capsys, monkeypatch):
    from retinanet.inference.detector import resolve_device

    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(RetinaNetError) as info:
            resolve_device(bad)
        assert bad in str(info.value) and "cpu, cuda, cuda:N or auto" in str(info.value)
    manifest, _ = write_tiny_zoo(tmp_path / "zoo")
    env = {"RDET_ZOO": str(manifest), "RDET_CACHE": str(tmp_path / "cache")}
    notes = tmp_path / "notes.bin"
    notes.write_text("some notes, not weights\n" * 20)
    image = tmp_path / "x.jpg"
    image.write_text("not an image either")
    _one_line(rdet_here(capsys, monkeypatch, "predict", NAME, "--weights", notes, env=env), 2,
              "notes.bin", "not a loadable checkpoint")
    _one_line(rdet_here(capsys, monkeypatch, "predict", NAME, "--device", "gpu", "--random-weights", env=env), 2,
              "unknown device 'gpu'")
    r = rdet_here(capsys, monkeypatch, "predict", NAME, image, "--json", env=env)
    assert r.returncode == 1 and "x.jpg: not an image file" in r.stderr and "BytesIO" not in r.stderr
    with pytest.raises(zoo.ZooError, match="unknown option.*scor_thr"):
        zoo.load(NAME, zoo_file=manifest, scor_thr=0.3)


def test_an_unforeseen_failure_is_one_line_exit_70_and_its_traceback_comes_on_request(capsys, monkeypatch):
    import cli.zoo_cmds

    def broken(_zoo_file):
        raise ValueError("invariant broken\nsecond line")

    monkeypatch.setattr(cli.zoo_cmds, "load_zoo", broken)
    r = rdet_here(capsys, monkeypatch, "list")
    _one_line(r, 70, "unexpected ValueError: invariant broken second line", "a bug in rdet", "RDET_TRACEBACK=1")
    with pytest.raises(ValueError, match="invariant broken"):
        rdet_here(capsys, monkeypatch, "list", env={"RDET_TRACEBACK": "1"})


def test_running_out_of_memory_is_one_line_exit_71_not_a_bug_report(capsys, monkeypatch):
    import cli.zoo_cmds

    def greedy(_zoo_file):
        raise MemoryError()

    monkeypatch.setattr(cli.zoo_cmds, "load_zoo", greedy)
    r = rdet_here(capsys, monkeypatch, "list")
    _one_line(r, 71, "out of host memory", "--batch-size")
    assert "a bug in rdet" not in r.stderr


@pytest.mark.parametrize("args, where", [
    (["predict", "photo.jpg", "--out", ""], "--out"),
    (["predict", "photo.jpg", "--out="], "--out"),
    (["predict", "--device", "", "photo.jpg"], "--device"),
    (["predict", ""], "an argument"),
    (["eval", NAME, "--ann", "", "--images", "imgs"], "--ann"),
    (["train", NAME, "--work-dir", ""], "--work-dir"),
    (["list", "--", ""], "an argument"),
])
def test_an_empty_value_is_refused_in_one_line_before_anything_is_written(args, where, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # click reads '' as '.': nothing may be written here
    _one_line(rdet_here(capsys, monkeypatch, *args), 2, f"{where}: empty value")
    assert list(tmp_path.iterdir()) == []
