"""Hostile manifests, checkpoints, cache directories, environment variables and options: each is one line and a
non-zero exit, never a traceback or rdet's "unexpected" line (the cases found by fuzzing the commands, task
s19zoo). Engine and zoo functions are called directly where they hold the rule; the CLI in-process otherwise."""
from __future__ import annotations

import zipfile

import pytest
import torch

from cli_inprocess import rdet_here
from retinanet.config import ModelConfig
from retinanet.errors import CheckpointError, ExportError, ImageError, RetinaNetError
from retinanet.model.checkpoint import load_state, read_checkpoint
from retinanet.model.reference_layout import reference_state_dict
from retinanet.model.retinanet import RetinaNet
from tiny_zoo import CLASSES, NAME, write_tiny_zoo
import zoo
from zoo.errors import DownloadError, ManifestError
from zoo.manifest import parse_manifest


def one_line_error(result, code=None):
    """The run failed with one `error:` line and no sign of a bug."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and (code is None or result.returncode == code), result
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert any(line.startswith(("error:", "Error:")) for line in lines), result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_zoo(tmp_path_factory.mktemp("tiny"))


# ---------------------------------------------------------------------------------------------------- manifests

ROW = '[[model]]\nname = "mine"\nurl = "https://example.org/mine.pth"\nsha256 = "12345678"\ndepth = 18\n' \
      'style = "pytorch"\nnum_classes = 2\n'


@pytest.mark.parametrize("change, field", [
    (('name = "mine"', 'name = "mine\\n"'), "name"),  # `$` matched before a final newline
    (('sha256 = "12345678"', 'sha256 = "12345678\\n"'), "sha256"),
    (('style = "pytorch"', 'style = "pytorch"\nschedule = "1x\\n"'), "schedule"),
    (('style = "pytorch"', 'style = "pytorch"\naliases = ["m\\n"]'), "aliases"),
    (("https://example.org/mine.pth", "https://[::1/mine.pth"), "url"),  # urlparse raised ValueError
    (("https://example.org/mine.pth", "https://example.org:99999/mine.pth"), "url"),
    (("https://example.org/mine.pth", "http://127.0.0.1:ab/mine.pth"), "url"),
    (("https://example.org/mine.pth", "https://" + "a" * 64 + ".org/mine.pth"), "url"),  # retried as transient
    (("https://example.org/mine.pth", "file:mine.pth"), "url"),  # relative to wherever rdet runs
    (("https://example.org/mine.pth", "file://elsewhere/mine.pth"), "url"),
    (('num_classes = 2', 'num_classes = 2\nclass_names = ["a", "a"]'), "class_names"),
    (('num_classes = 2', 'num_classes = 1\nclass_names = [""]'), "class_names"),
    (('num_classes = 2', 'num_classes = 2\nstd = [1e-320, 1, 1]'), "std"),  # inputs overflowed: no detections
    (('num_classes = 2', 'num_classes = 2\nmean = [1e308, 0, 0]'), "mean"),
])
def test_a_malformed_field_is_named(change, field):
    with pytest.raises(ManifestError, match=f"field '{field}' must be"):
        parse_manifest(ROW.replace(*change), "m.toml")


def test_a_backbone_file_named_as_the_checkpoint_is_refused():
    text = ROW + 'pretrained_url = "https://elsewhere.org/mine.pth"\npretrained_sha256 = "abcdef12"\n'
    with pytest.raises(ManifestError, match="pretrained_url names the same file, mine.pth, as url"):
        parse_manifest(text, "m.toml")  # one cache file for both: each download evicted the other


def test_a_backbone_wider_than_any_published_resnext_is_refused_before_it_is_built():
    wide = ROW.replace("depth = 18", "depth = 101\ngroups = 256\nbase_width = 1024")  # 64 GB of weights and more
    with pytest.raises(ManifestError, match=r"groups x base_width 256 x 1024 is wider than any published ResNeXt"):
        parse_manifest(wide, "m.toml")
    widest = ROW.replace("depth = 18", "depth = 101\ngroups = 32\nbase_width = 48")  # 32x48d: still accepted
    assert parse_manifest(widest, "m.toml")[0].groups == 32


@pytest.mark.parametrize("schema", ["2", '"1"', "1.0"])
def test_a_manifest_schema_this_rdet_does_not_read_is_refused(schema):
    with pytest.raises(ManifestError, match="is not one this rdet reads"):
        parse_manifest(f"schema = {schema}\n" + ROW, "m.toml")
    assert parse_manifest("schema = 1\n" + ROW, "m.toml")[0].name == "mine"


def test_an_unparseable_manifest_url_is_one_line_from_the_cli(tmp_path, capsys, monkeypatch):
    manifest = tmp_path / "m.toml"
    manifest.write_text(ROW.replace("https://example.org/mine.pth", "https://[::1/mine.pth"))
    assert "field 'url'" in one_line_error(rdet_here(capsys, monkeypatch, "list", "--zoo", manifest), 2)


# ---------------------------------------------------------------------------------------------------- settings

@pytest.mark.parametrize("mirror", ["abc", "ftp://mirror.example", "http://[::1", "http://mirror.example:99999",
                                    "https://" + "a" * 300 + "/x", "file:relative"])
def test_a_junk_rdet_mirror_is_one_line_and_shows_no_credentials(mirror, monkeypatch):
    from zoo.settings import mirrored

    monkeypatch.setenv("RDET_MIRROR", mirror.replace("://", "://user:secret@"))
    with pytest.raises(DownloadError, match="RDET_MIRROR must be") as caught:
        mirrored("https://download.openmmlab.com/mmdetection/x.pth")
    assert "secret" not in str(caught.value)


def test_doctor_shows_no_credentials_and_fails_a_junk_mirror(capsys, monkeypatch, tmp_path):
    env = {"RDET_MIRROR": "https://user:secret@mirror.example/openmmlab", "RDET_CACHE": str(tmp_path)}
    monkeypatch.setenv("HTTPS_PROXY", "http://proxyuser:pxsecret@proxy.example:3128")
    r = rdet_here(capsys, monkeypatch, "doctor", "--offline", env=env)
    assert "secret" not in r.stdout + r.stderr and "***@mirror.example" in r.stdout + r.stderr
    r = rdet_here(capsys, monkeypatch, "doctor", "--offline", "--json", env={**env, "RDET_MIRROR": "http://[::1"})
    assert r.returncode == 1 and "unexpected" not in r.stderr and '"RDET_MIRROR must be' not in r.stderr
    assert "RDET_MIRROR must be" in r.stdout


def test_rdet_max_pixels_takes_ascii_digits_within_bounds(monkeypatch):
    from retinanet.data.images import max_file_bytes, max_pixels

    for junk in ("²", "٣", "99999999999999999999999999"):  # int("²") raised; the huge one overflowed f.read
        monkeypatch.setenv("RDET_MAX_PIXELS", junk)
        with pytest.raises(ImageError, match="RDET_MAX_PIXELS must be a positive whole number"):
            max_file_bytes()
    monkeypatch.setenv("RDET_MAX_PIXELS", "1000")
    assert max_pixels() == 1000


def test_random_weights_say_why_they_read_the_bundled_photo(tiny, monkeypatch):
    """A sweep's finding: a low RDET_MAX_PIXELS failed naming a photo the user never gave."""
    monkeypatch.setenv("RDET_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="^random weights are calibrated on the bundled photo, which cannot be "):
        zoo.load(NAME, zoo_file=tiny[0], random_weights=True, device="cpu")


# ---------------------------------------------------------------------------------------------------- the cache

@pytest.mark.parametrize("command", [["cache", "list"], ["cache", "verify"], ["list"],
                                     ["doctor", "--offline", "--json"]])
def test_a_cache_path_that_cannot_be_used_is_one_line(command, capsys, monkeypatch, tmp_path):
    too_long = str(tmp_path / ("d" * 300))  # stat raised ENAMETOOLONG from pathlib's is_dir/is_file
    r = rdet_here(capsys, monkeypatch, *command, env={"RDET_CACHE": too_long})
    assert "unexpected" not in r.stderr and "File name too long" in r.stdout + r.stderr and r.returncode != 0


@pytest.mark.parametrize("command", [["cache", "list"], ["cache", "verify"]])
def test_a_cache_that_is_a_file_is_reported_not_listed_as_empty(command, capsys, monkeypatch, tmp_path):
    (tmp_path / "file").write_text("x")
    r = rdet_here(capsys, monkeypatch, *command, env={"RDET_CACHE": str(tmp_path / "file")})
    assert "is not a directory" in one_line_error(r, 1)


@pytest.mark.parametrize("companion", ["", ".part", ".lock", ".verified", ".bad"])
def test_a_directory_where_the_cache_keeps_a_file_is_named_before_any_download(companion, tiny, tmp_path, capsys,
                                                                               monkeypatch):
    manifest, checkpoint = tiny
    (tmp_path / (checkpoint.name + companion)).mkdir()  # before: a copy failing half-way, or after it was installed
    r = rdet_here(capsys, monkeypatch, "download", NAME, "--zoo", manifest, env={"RDET_CACHE": str(tmp_path)})
    assert "is in the way" in one_line_error(r, 1)
    r = rdet_here(capsys, monkeypatch, "doctor", "--offline", "--json", "--zoo", manifest,
                  env={"RDET_CACHE": str(tmp_path)})
    assert "unexpected" not in r.stderr  # a directory named like a lock file was opened as one


# ---------------------------------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def tiny_state():
    return reference_state_dict(depth=18, num_classes=len(CLASSES), seed=0)


@pytest.fixture(scope="module")
def tiny_model():
    return RetinaNet(ModelConfig(depth=18, num_classes=len(CLASSES), class_names=CLASSES))


KEY = "bbox_head.retina_cls.weight"


@pytest.mark.parametrize("case, message", [
    (lambda sd: {1: torch.zeros(1), **sd}, "a key that is not a parameter name: 1"),
    (lambda sd: {**sd, KEY: sd[KEY].to_sparse()}, f"{KEY} is a torch.sparse_coo tensor"),
    (lambda sd: {"state_dict": sd, "meta": {"dataset_meta": "x"}}, None),  # meta.get on a str
    (lambda sd: {"state_dict": sd, "meta": {"CLASSES": ["a", "b"]}}, "its meta names 2 classes, but its "
                                                                      "classification layer scores 3"),
])
def test_a_malformed_checkpoint_is_refused_when_read(case, message, tiny_state, tmp_path):
    path = tmp_path / "c.pth"
    torch.save(case(tiny_state), path)
    if message is None:
        assert read_checkpoint(path)["meta"] == {"dataset_meta": "x"}
        return
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_a_plain_pickle_is_refused_without_torchs_warning(tmp_path):
    """A sweep's finding: torch's 'Detected pickle protocol 4' UserWarning reached stderr before the one line."""
    import pickle
    import warnings

    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"state_dict": {KEY: torch.zeros(2)}}, protocol=4))
    with warnings.catch_warnings(record=True) as said, pytest.raises(CheckpointError, match="plain.pth: not a "):
        warnings.simplefilter("always")
        read_checkpoint(path)
    assert not said, [str(w.message) for w in said]


@pytest.mark.parametrize("change, message", [
    (lambda t: t.to(torch.int64), "is torch.int64, not floating-point"),
    (lambda t: t.to(torch.complex64), "is torch.complex64, not floating-point"),
    (lambda t: torch.full_like(t, float("nan")), f"NaN or infinite weights in 1 tensors: {KEY}"),
    (lambda t: torch.full_like(t, float("inf")), f"NaN or infinite weights in 1 tensors: {KEY}"),
])
def test_weights_of_the_wrong_kind_never_load(change, message, tiny_state, tiny_model):
    model = tiny_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        load_state(model, {**tiny_state, KEY: change(tiny_state[KEY])})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded


def test_fp16_weights_still_load_upcast_as_the_reference_loads_them(tiny_state, tiny_model):
    load_state(tiny_model, {k: v.half() if v.is_floating_point() else v for k, v in tiny_state.items()})
    assert torch.equal(tiny_model.state_dict()[KEY], tiny_state[KEY].half().float())


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "is a directory, not a file"),
    (lambda p: p.symlink_to(p), "cannot be reached"),
    (lambda p: p.symlink_to("/dev/null"), "not a regular file"),
])
def test_a_checkpoint_path_that_is_no_file_says_what_it_is(make, message, tmp_path):
    path = tmp_path / "c.pth"
    make(path)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_nan_weights_from_the_cli_are_one_line(tiny, tiny_state, tmp_path, capsys, monkeypatch):
    manifest, _ = tiny
    path = tmp_path / "nan.pth"
    torch.save({"state_dict": {**tiny_state, KEY: torch.full_like(tiny_state[KEY], float("nan"))}}, path)
    r = rdet_here(capsys, monkeypatch, "predict", NAME, str(path), "--zoo", manifest, "--weights", path, "--json")
    assert "NaN or infinite weights" in one_line_error(r, 2)


@pytest.mark.parametrize("content", [b"not a zip", None])
def test_an_unreadable_pt2_is_one_line_without_torchs_logged_traceback(content, tmp_path, capfd):
    from retinanet.export.runtime import open_export

    path = tmp_path / "m.pt2"
    if content is None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("a.txt", "x")
    else:
        path.write_bytes(content)
    with pytest.raises(ExportError, match="not a loadable ExportedProgram"):
        open_export(path)
    assert "Traceback" not in capfd.readouterr().err


class _RunsCode:
    """Unpickled, it creates a file: the proof that a load ran code from the archive."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tiny_pt2(path, metadata: str):
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    program = torch.export.export(Scale(), (torch.ones(3),))
    torch.export.save(program, path, extra_files={"rdet.json": metadata})


def _rewrite(src, dst, change):
    """A copy of zip archive `src` with change(name, bytes) -> bytes applied to each member."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for item in a.infolist():
            b.writestr(item, change(item.filename, a.read(item.filename)))


@pytest.mark.parametrize("where", ["a weight marked use_pickle", "sample inputs only full unpickling reads"])
def test_a_pt2_that_asks_to_unpickle_code_is_refused_and_its_code_never_runs(where, tmp_path):
    import io
    import json

    from retinanet.export.runtime import open_export

    good, evil, marker = tmp_path / "good.pt2", tmp_path / "m.pt2", tmp_path / "code-ran"
    _tiny_pt2(good, "{}")
    payload = io.BytesIO()
    torch.save(_RunsCode(marker), payload)

    def change(name, data):
        if where.startswith("a weight") and name.endswith("model_weights_config.json"):
            config = json.loads(data)
            config["config"]["w"]["use_pickle"] = True
            return json.dumps(config).encode()
        if where.startswith("a weight") and name.endswith("weights/weight_0"):
            return payload.getvalue()
        if where.startswith("sample") and name.endswith("sample_inputs/model.pt"):
            return payload.getvalue()  # the weights-only unpickler refuses it; torch then retried without
        return data

    _rewrite(good, evil, change)
    with pytest.raises(ExportError, match="m.pt2: refused: .*full unpickling"):
        open_export(evil)
    assert not marker.exists()  # was: torch.export.load created it
    assert torch.load is torch.serialization.load  # the guard is gone after the load


@pytest.mark.parametrize("location", ["../../../etc/hostname", "weights.bin"])
def test_an_onnx_file_whose_tensors_live_in_other_files_is_refused(location, tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from retinanet.export.runtime import open_export

    (tmp_path / "weights.bin").write_bytes(np.ones(4, np.float32).tobytes())
    weight = numpy_helper.from_array(np.ones(4, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": "16"}.items():
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    io_ = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", io_[:1], io_[1:], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.metadata_props.add(key="rdet", value="{}")
    onnx.save(model, tmp_path / "m.onnx")
    # the escaping path is refused by recent onnxruntime too; a file beside the model would be read by any
    with pytest.raises(ExportError, match="m.onnx: refused: tensor w keeps its data in another file"):
        open_export(tmp_path / "m.onnx")


def _relu_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    io_ = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", io_[:1], io_[1:])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


_ONNX_SESSION = """
import os, sys
from pathlib import Path
from retinanet.errors import ExportError
from retinanet.export.runtime import open_export
try:
    open_export(Path(sys.argv[1]))  # a session is made; the file has no rdet metadata, so it is then refused
except ExportError:
    pass
print(os.environ.get("ORT_DISABLE_TELEMETRY"))
"""


def test_onnxruntime_is_told_not_to_send_telemetry_unless_the_user_says_otherwise(tmp_path):
    import os
    import subprocess
    import sys

    _relu_onnx(tmp_path / "m.onnx")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    for given, seen in [(None, "1"), ("0", "0")]:
        r = subprocess.run([sys.executable, "-c", _ONNX_SESSION, str(tmp_path / "m.onnx")], capture_output=True,
                           text=True, env=env if given is None else {**env, "ORT_DISABLE_TELEMETRY": given})
        assert r.returncode == 0 and r.stdout.split() == [seen], r.stderr


@pytest.mark.slow  # onnxruntime uploads about a minute after its first session
def test_an_onnx_session_sends_nothing_anywhere(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import threading

    _relu_onnx(tmp_path / "m.onnx")
    listener, seen = socket.create_server(("127.0.0.1", 0)), []

    def accept():
        while True:
            conn, _ = listener.accept()
            conn.settimeout(2)
            seen.append(conn.recv(200))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"  # every HTTPS request of the process comes here
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "ort_disable_telemetry")}
    script = _ONNX_SESSION + "import time; time.sleep(90)\n"
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.onnx")], capture_output=True, text=True,
                       env={**env, "HTTPS_PROXY": proxy, "https_proxy": proxy})
    assert r.returncode == 0, r.stderr
    assert seen == []  # was: CONNECT mobile.events.data.microsoft.com:443, four times


# ---------------------------------------------------------------------------------------------------- resume

STATE = {"epoch": 1, "iter_in_epoch": 0, "iter": 3, "global_batch": 1, "lr": 0.01, "seed": 0}


def resume_file(work_dir, **changes):
    from retinanet.training.train_state import LATEST, point_latest, rng_state

    work_dir.mkdir(exist_ok=True)
    ckpt = {"state_dict": reference_state_dict(depth=18, num_classes=len(CLASSES)), "optimizer": {"state": {},
            "param_groups": [{"params": [0, 1]}]}, "train_state": {**STATE, "rng": rng_state()}, **changes}
    torch.save(ckpt, work_dir / "epoch_1.pth")
    point_latest(work_dir, work_dir / "epoch_1.pth")
    return work_dir / LATEST


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": [1]}, "its optimizer state is not a dict"),  # TypeError in torch's load_state_dict
    ({"state_dict": {1: torch.zeros(1)}}, "a key that is not a parameter name"),
    ({"train_state": {**STATE, "seed": 1 << 40, "rng": {"torch": 0, "python": 0, "numpy": 0}}}, "seed .* is beyond"),
])
def test_a_damaged_training_checkpoint_is_refused_before_resuming(changes, message, tmp_path):
    from retinanet.training.train_state import read_resume_state

    with pytest.raises(CheckpointError, match=message):
        read_resume_state(resume_file(tmp_path / "w", **changes))
    (tmp_path / "t.pth").write_text("hello")  # was "cannot resume from it (101)", the unpickler's KeyError
    with pytest.raises(CheckpointError, match="not a PyTorch file"):
        read_resume_state(tmp_path / "t.pth")


@pytest.mark.parametrize("rng", [None, {"torch": torch.zeros(3), "python": [1], "numpy": "x"}])
def test_optimizer_or_rng_state_that_torch_refuses_is_one_line(rng, tmp_path):
    from coco_data import write_annotations, write_images
    from retinanet.data.coco import CocoSet
    from retinanet.training.trainer import Trainer, TrainOptions

    ann = write_annotations(tmp_path / "ann.json", write_images(tmp_path / "img"), [(42, 3, (10, 10, 30, 30))])
    changes = {} if rng is None else {"optimizer": {}, "train_state": {**STATE, "rng": rng}}
    resume_file(tmp_path / "w", **changes)
    cfg = ModelConfig(depth=18, num_classes=len(CLASSES), class_names=CLASSES, scale=(64, 64))
    with pytest.raises(CheckpointError, match="optimizer, loss-scaler or RNG state cannot be restored"):
        Trainer(cfg, CocoSet.load(ann, tmp_path / "img"), tmp_path / "w",
                TrainOptions(epochs=2, batch_size=1, workers=0, resume=True))


# ---------------------------------------------------------------------------------------------------- options

@pytest.mark.parametrize("args", [
    ["predict", NAME, "x.jpg", "--batch-size", "99999999999999999999"],  # islice refused it mid-run
    ["eval", NAME, "--data-root", ".", "--batch-size", "99999999999999999999"],
    ["eval", NAME, "--data-root", ".", "--workers", "100000"],
    ["predict", NAME, "x.jpg", "--size", "99999x99999"],  # OpenCV's allocation failed
    ["train", NAME, "--data-root", ".", "--epochs", "99999999999999999999"],  # trained for ever
    ["train", NAME, "--data-root", ".", "--lr", "1e300"],  # float32 overflow in the optimizer
    ["train", NAME, "--data-root", ".", "--seed", "99999999999999999999"],  # torch.manual_seed overflow
    ["train", NAME, "--data-root", ".", "--seed", "-1"],
    ["bench", NAME, "--random-weights", "--num-images", "99999999999999999999"],  # timed for ever
])
def test_numbers_past_an_options_range_are_refused_before_any_work(args, tiny, capsys, monkeypatch):
    r = rdet_here(capsys, monkeypatch, *args, "--zoo", tiny[0])
    one_line_error(r, 2)


@pytest.mark.parametrize("args", [
    ["eval", NAME, "--random-weights", "--csv", "{file}/x.csv"],  # each wrote after the whole evaluation
    ["eval", NAME, "--random-weights", "--plots", "{file}/plots"],
    ["eval", "--all", "--report", "{file}/report"],
    ["bench", NAME, "--fps", "--random-weights", "--plot", "{file}/speed.png"],
    ["export", NAME, "--out", "{file}/x.onnx"],
])
def test_an_output_path_under_a_file_is_one_line_before_any_work(args, tiny, tmp_path, capsys, monkeypatch):
    from coco_data import write_annotations, write_images

    ann = write_annotations(tmp_path / "ann.json", write_images(tmp_path / "img"), [(42, 3, (10, 10, 30, 30))])
    (tmp_path / "file").write_text("x")
    args = [a.format(file=tmp_path / "file") for a in args]
    r = rdet_here(capsys, monkeypatch, *args, "--zoo", tiny[0], *(["--ann", ann, "--images", tmp_path / "img"]
                                                                  if args[0] == "eval" else []))
    assert "not a directory" in one_line_error(r, 2).lower()


def test_a_training_batch_larger_than_the_training_set_is_refused(tiny, tmp_path, capsys, monkeypatch):
    from coco_data import write_annotations, write_images

    boxes = [(42, 3, (10, 10, 30, 30)), (7, 7, (5, 5, 20, 20)), (1000, 12, (10, 20, 40, 50))]
    ann = write_annotations(tmp_path / "ann.json", write_images(tmp_path / "img"), boxes)
    r = rdet_here(capsys, monkeypatch, "train", NAME, "--zoo", tiny[0], "--ann", ann, "--images", tmp_path / "img",
                  "--init", "none", "--batch-size", "1000", "--workers", "0", "--size", "64x64", "--work-dir",
                  tmp_path / "w", "-q")
    assert "more images per step than the 3 training image(s)" in one_line_error(r, 2)


# ---------------------------------------------------------------------------------------------------- torchrun

@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "abc", "RANK": "0"}, "WORLD_SIZE='abc'"),
    ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x'"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK='5' is not a whole number from 0 to 1"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "z", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "LOCAL_RANK='z'"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR is not"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "0"}, "MASTER_PORT='0'"),
])
def test_junk_torchrun_variables_are_one_line_said_by_every_process(env, message, monkeypatch, capsys):
    from retinanet.launch_env import is_main_process
    from retinanet.launch_env import torchrun_launch

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RetinaNetError, match=message):
        torchrun_launch()
    assert is_main_process()  # so that the process says why it stops
    r = rdet_here(capsys, monkeypatch, "eval", "--all", "--data-root", ".")
    assert message in one_line_error(r, 2)


def test_a_single_process_ignores_a_stray_rank(monkeypatch):
    from retinanet.launch_env import is_main_process
    from retinanet.launch_env import torchrun_launch

    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "1")  # before: not rank 0, so its errors went unsaid
    assert torchrun_launch().world_size == 1 and is_main_process()


# ---------------------------------------------------------------------------------------------------- memory

def test_an_allocation_that_fails_is_out_of_memory_not_a_bug():
    from cli.main import exhausted_memory

    with pytest.raises(RuntimeError) as caught:
        torch.empty(1 << 60, dtype=torch.uint8)  # an exbibyte: refused by any allocator
    assert exhausted_memory(caught.value) == "host"
    assert exhausted_memory(MemoryError()) == "host" and exhausted_memory(ValueError("x")) is None


def test_json_nested_too_deep_in_rdets_own_files_is_no_crash(tmp_path):
    """A cache record, a reproduce row and export metadata nested past the parser's recursion limit: the record
    and the row read as not ours (the file is verified, the row scored again), the metadata is one line."""
    from retinanet.export.metadata import ExportInfo
    from zoo.cache import read_record, record_path
    from zoo.reproduce import _row_file, _scored_before

    deep = "[" * 50_000 + "]" * 50_000
    dest = tmp_path / "model.pth"
    record_path(dest).write_text(deep[:30_000] + deep[-30_000:])  # within the record's size limit
    assert read_record(dest) is None
    _row_file(tmp_path, "r50").parent.mkdir(parents=True)
    _row_file(tmp_path, "r50").write_text(deep)
    assert _scored_before(tmp_path, "r50", {"weights": "x"}) is None
    _row_file(tmp_path, "r50").write_text("1" * 5000)  # over Python's integer digits limit
    assert _scored_before(tmp_path, "r50", {"weights": "x"}) is None
    with pytest.raises(ExportError, match="nested too deeply"):
        ExportInfo.from_json(deep, "model.onnx")
