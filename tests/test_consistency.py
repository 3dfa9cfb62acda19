"""One way to say things across commands (#17 findings 7, 8 and 10): the model named first, --precision with --amp
as its alias, fractions in every JSON, output that fits 80 columns and never cuts a URL, help without <bool> and
with whole examples, completion, no empty tables, and a bench that says up front what it will take."""
import json
import re

import pytest

from cli_inprocess import rdet_here
from tiny_zoo import NAME, run_rdet, write_tiny_zoo

COMMANDS = ["demo", "list", "info", "download", "import", "predict", "eval", "train", "bench", "doctor",
            "cache list", "cache verify", "cache rm"]
WIDE = {"COLUMNS": "80"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifest, _ = write_tiny_zoo(root)
    return root, {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}


def _docstring_examples(command: str) -> list[str]:
    from typer.main import get_command

    from cli.main import app

    cmd = get_command(app)
    for part in command.split():
        cmd = cmd.commands[part]
    doc = cmd.callback.__doc__ or ""
    return [line.strip() for line in doc.split("Examples:")[-1].splitlines() if line.strip()] if "Examples:" in doc \
        else []


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_with_whole_examples_and_no_bool(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # typer builds its help console per call: it reads the width then
    r = rdet_here(capsys, monkeypatch, *command.split(), "--help")
    assert r.returncode == 0, r.stderr
    assert "<bool>" not in r.stdout
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    for example in _docstring_examples(command):
        assert example in r.stdout, f"{command}: example wrapped: {example}"


def test_list_fits_80_columns_and_info_prints_urls_whole(tiny):
    for args in (["list"], ["list", "r101_caffe", "--cost"]):  # --cost: the widest table, for one model
        r = run_rdet(*args, env_extra=WIDE)
        assert r.returncode == 0, r.stderr
        assert "…" not in r.stdout and all(len(line) <= 80 for line in r.stdout.splitlines())
        assert "r101_caffe_fpn_1x" in r.stdout
    assert "GFLOPs" in r.stdout
    r = run_rdet("info", "r101_caffe_fpn_1x", env_extra=WIDE)
    url = "https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_caffe_fpn_1x_coco/" \
          "retinanet_r101_caffe_fpn_1x_coco_20200531-b428fa0f.pth"
    assert any(line.strip().endswith(url) for line in r.stdout.splitlines())  # on one line, copyable
    assert re.search(r"size\s+5\d\.\d\d M parameters, \d+\.\d GFLOPs per 1344x800", r.stdout)
    r = run_rdet("list", "nomatch", env_extra=WIDE)
    assert r.returncode == 1 and "┏" not in r.stdout + r.stderr and "no model matches 'nomatch'" in r.stderr


def test_params_and_flops_are_torchs_count_at_the_test_scale():
    from retinanet.benchmark.flops import model_cost
    from retinanet.config import ModelConfig

    cost = model_cost(ModelConfig(depth=50))
    assert cost.input_size == (1344, 800)
    # 37.97 M parameters; MMDetection's get_flops (multiply-adds, 1280x800) reports 239 G for this model:
    # x2 for FLOPs and x1344/1280 for the width gives about 502
    assert cost.params == pytest.approx(37.97e6, rel=1e-3)
    assert cost.gflops == pytest.approx(239.32 * 2 * 1344 / 1280, rel=0.01)


@pytest.mark.parametrize("name", ["r50_caffe_fpn_1x", "r101_fpn_2x", "x101_32x4d_fpn_1x", "x101_64x4d_fpn_2x"])
def test_the_manifests_params_and_flops_are_the_counters(name):
    import zoo
    from retinanet.benchmark.flops import model_cost

    entry = zoo.get(name)
    cost = model_cost(entry.model_config())
    assert entry.params == cost.params and entry.gflops == round(cost.gflops, 1)


def test_json_figures_are_fractions_everywhere(capsys, monkeypatch):
    r = rdet_here(capsys, monkeypatch, "list", "r50_fpn_1x", "--json")
    assert json.loads(r.stdout)[0]["box_ap"] == 0.365
    r = rdet_here(capsys, monkeypatch, "info", "r50_fpn_1x", "--json")
    doc = json.loads(r.stdout)
    assert doc["box_ap"] == 0.365 and doc["params"] > 0 and doc["gflops"] > 0


def test_the_model_is_named_first_or_with_the_older_option(tiny, tmp_path, capsys, monkeypatch):
    root, env = tiny
    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (90, 160, 20)).save(image)
    first = rdet_here(capsys, monkeypatch, "predict", NAME, image, "--json", "--size", "64x64", env=env)
    older = rdet_here(capsys, monkeypatch, "predict", image, "--model", NAME, "--json", "--size", "64x64", env=env)
    assert first.returncode == older.returncode == 0, first.stderr + older.stderr
    assert json.loads(first.stdout)["images"] == json.loads(older.stdout)["images"]
    assert json.loads(first.stdout)["model"] == NAME
    high = rdet_here(capsys, monkeypatch, "predict", NAME, image, "--score-thr", "1", "--size", "64x64", env=env)
    assert "┏" not in high.stdout and "0 detection(s) scoring above 1" in high.stdout  # no empty table


def test_precision_everywhere_with_amp_as_its_alias(capsys, monkeypatch):
    from cli.common import Fail
    from cli.precision import chosen_precision

    assert chosen_precision(None, False, "cpu") == "fp32"
    assert chosen_precision(None, True, "cpu") == "bf16" and chosen_precision(None, True, "cuda") == "fp16"
    assert chosen_precision("bf16", True, "cpu") == "bf16"
    with pytest.raises(Fail, match="--amp means --precision fp16"):
        chosen_precision("bf16", True, "cuda")
    with pytest.raises(Fail, match="one of fp32, tf32, bf16, fp16"):
        chosen_precision("fp8", False, "cpu")
    for command in ("predict", "eval", "train", "bench"):
        r = rdet_here(capsys, monkeypatch, command, "--help")
        assert "--precision" in r.stdout, command


def test_bench_says_up_front_what_it_takes_and_reports_each_model_when_piped(tiny, capsys, monkeypatch):
    root, env = tiny
    r = rdet_here(capsys, monkeypatch, "bench", NAME, "--fps", "--random-weights", "--num-images", "2", "--warmup",
                  "1", "--size", "64x64", "--device", "cpu", "--json", env=env)
    assert r.returncode == 0, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("bench: 1 model(s), 2 images each for speed") and "a minute per model" in first
    assert any(line.startswith(f"{NAME}: fps ") for line in r.stderr.splitlines())
    doc = json.loads(r.stdout)
    assert doc["provenance"]["weights"] == {"source": "random", "seed": 0}
    assert doc["provenance"]["precision"] == "fp32" and doc["provenance"]["scale"] == [64, 64]


def test_shell_completion_is_on():
    # what `rdet --install-completion bash` makes the shell run; --show-completion guesses the shell from the
    # parent processes, which fails under a test runner started without one
    r = run_rdet(env_extra={"_RDET_COMPLETE": "source_bash"})
    assert r.returncode == 0 and "_rdet_completion" in r.stdout
    assert "--show-completion" in run_rdet("--help").stdout


def test_no_empty_tables(tmp_path, capsys, monkeypatch):
    for args, said in ((["cache", "list"], "no cached files"), (["cache", "verify"], "no cached files to verify")):
        r = rdet_here(capsys, monkeypatch, *args, "--cache-dir", tmp_path / "empty")
        assert r.returncode == 0 and "┏" not in r.stdout and said in r.stdout
