"""`rdet bench`: the timing loop, the memory probe, the chart, and the command end to end in real subprocesses."""
import hashlib
import json
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from cli.plot import nice_ticks, speed_accuracy_chart
from retinanet.benchmark import measure as benchmark
from retinanet.benchmark.measure import Memory, time_inference
from tiny_zoo import NAME, run_rdet, write_tiny_zoo

MIB = 2 ** 20
# One OpenMP thread: on a loaded 2-core machine two threads spin against each other and run many times slower.
ENV = {"OMP_NUM_THREADS": "1"}
SCHEMA = {"model", "fps", "ms_per_image", "runtime", "detections_per_image", "mem_gb", "published_fps",
          "published_mem_gb"}


# --- engine: memory probe and timing loop -------------------------------------------------------------------


_PROBE = """
import json, time
import torch
from retinanet.benchmark import measure

def allocate_200_mib():
    x = torch.ones(200 * 2**20 // 4)  # float32: every page is written, so it is resident
    time.sleep(0.05)  # long enough for the sampling fallback to see it
    return float(x[-1])

result, mem = measure.peak_memory(allocate_200_mib, "cpu")
_, idle = measure.peak_memory(lambda: None, "cpu")
measure._reset_peak_rss = lambda: False  # the fallback: sampling the RSS in a thread
_, sampled = measure.peak_memory(allocate_200_mib, "cpu")
print(json.dumps({"result": result, "kind": mem.kind, "bytes": mem.bytes, "idle": idle.bytes,
                  "sampled": sampled.bytes}))
"""


def test_memory_probe_sees_a_known_allocation_and_the_sampling_fallback_too():
    # in a fresh process, as `rdet bench --mem` measures: a long-lived one (a test worker) may hold freed pages
    # that a new allocation reuses without growing the resident set
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["result"] == 1.0 and got["kind"] == benchmark.CPU_KIND
    assert 180 * MIB <= got["bytes"] < 400 * MIB
    assert got["idle"] < 50 * MIB  # the 200 MiB of the first call are not counted again
    assert got["sampled"] >= 180 * MIB


def test_memory_reports_gigabytes_as_the_table_does():
    assert Memory(int(3.8 * 1024 ** 3), benchmark.CUDA_KIND).gb == pytest.approx(3.8)


class _FakeDetector:
    """Takes 20 ms per call and records the batches it is given."""

    device = torch.device("cpu")
    autotune = False

    def __init__(self):
        self.calls = []

    def device_path(self):
        return None  # the CPU's plain path

    def detect_prepared(self, prepared, batch_size=1):
        self.calls.append(len(prepared))
        assert all(t.device.type == "cpu" for t, _ in prepared)
        time.sleep(0.02)
        return [[0.9, 0.8]] * len(prepared)  # two "detections" per image


def test_timing_skips_the_warmup_iterations_and_counts_images():
    det, seen = _FakeDetector(), []
    speed = time_inference(det, lambda i: (torch.zeros(3, 8, 8), None), images=7, warmup=2, batch_size=2,
                           progress=seen.append)
    assert det.calls == [2, 2, 2, 1] and sum(seen) == 7
    assert speed.images == 3  # 2 iterations of 2 untimed
    assert 0.02 * 2 <= speed.seconds < 0.5
    assert speed.ms_per_image == pytest.approx(1000 * speed.seconds / 3)
    assert speed.fps == pytest.approx(3 / speed.seconds)
    assert speed.detections == 2  # per timed image: the post-processing load the figure includes


def test_uint8_arrays_uint8_tensors_and_normalised_tensors_time_the_same_detections():
    """What a loader may hand over (inputs.loader_for: uint8 pinned tensors on CUDA, normalised tensors on the
    CPU; a uint8 array): each is uploaded and normalised as it needs, to the same detections."""
    import numpy as np

    from retinanet import Detector, ModelConfig
    from retinanet.benchmark.inputs import host_loader, loader_for

    det = Detector(ModelConfig(depth=18, num_classes=3, scale=(96, 64)), device="cpu")
    seen = []
    det.detect_prepared = lambda prepared, batch_size=1, f=det.detect_prepared: seen.append(
        prepared[0][0]) or f(prepared, batch_size=batch_size)
    arrays = host_loader(det.cfg, uint8=True)
    for load in (loader_for(det), arrays, lambda i: (torch.from_numpy(arrays(i)[0]), arrays(i)[1])):
        time_inference(det, load, images=2, warmup=1)
    assert isinstance(arrays(0)[0], np.ndarray) and arrays(0)[0].dtype == np.uint8
    assert len(seen) == 6 and all(t.dtype == torch.float32 and t.shape == seen[0].shape for t in seen)
    assert all(torch.equal(t, seen[0]) for t in seen)


def test_timing_needs_something_left_after_the_warmup():
    with pytest.raises(benchmark.RetinaNetError, match="nothing to time"):
        time_inference(_FakeDetector(), lambda i: None, images=5, warmup=5)


def test_device_name_gives_the_cpu_and_its_threads():
    name = benchmark.device_name("cpu")
    assert name.endswith(f"{torch.get_num_threads()} thread" + ("s" if torch.get_num_threads() != 1 else ""))
    assert len(name.split(",")[0]) > 0


# --- chart --------------------------------------------------------------------------------------------------


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0, 22) == [0, 5, 10, 15, 20, 25]
    ticks = nice_ticks(35.8, 41.5)
    assert ticks[0] <= 35.8 and ticks[-1] >= 41.5 and len(set(round(b - a, 9) for a, b in zip(ticks, ticks[1:]))) == 1


def test_chart_is_a_png_with_a_point_per_model(tmp_path):
    points = [("r50_fpn_1x", 19.0, 36.5), ("r101_fpn_1x", 15.0, 38.5), ("x101_64x4d_fpn_1x", 8.7, 41.0)]
    path = speed_accuracy_chart(points, tmp_path / "sub" / "chart.png", title="test")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (960, 640)
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    assert (0x1F, 0x77, 0xB4) in colours and (0xD6, 0x27, 0x28) in colours  # the first two points' colours


# --- rdet bench end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """The tiny zoo plus an entry whose checkpoint file is truncated (its checksum matches, so it downloads)."""
    root = tmp_path_factory.mktemp("bench")
    manifest, ckpt = write_tiny_zoo(root)
    junk = ckpt.read_bytes()[: ckpt.stat().st_size // 2]
    sha = hashlib.sha256(junk).hexdigest()
    broken = root / f"broken18_20260101-{sha[:8]}.pth"
    broken.write_bytes(junk)
    manifest.write_text(manifest.read_text() + f"""
[[model]]
name = "broken18"
depth = 18
style = "pytorch"
num_classes = 3
fps = 50.0
url = "{broken.as_uri()}"
sha256 = "{sha[:8]}"
""")
    return root, manifest


def test_bench_json_schema_figures_and_plot(zoo_dir):
    root, manifest = zoo_dir
    chart = root / "chart.png"
    r = run_rdet("bench", NAME, "--zoo", manifest, "--random-weights", "--device", "cpu", "--images", "2",
                 "--warmup", "1", "--size", "64x64", "--json", "--plot", chart, env_extra=ENV)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is the JSON document and nothing else
    assert set(doc) == {"device", "results", "provenance"} and "thread" in doc["device"]
    (row,) = doc["results"]
    assert set(row) == SCHEMA and row["model"] == NAME and row["runtime"] == "PyTorch (cpu)"
    assert row["fps"] > 0 and row["ms_per_image"] > 0
    assert row["ms_per_image"] == pytest.approx(1000 / row["fps"], rel=0.01)
    assert row["mem_gb"] > 0  # a training process grows by at least its model, gradients and momentum
    assert (row["published_fps"], row["published_mem_gb"]) == (100.0, 0.5)
    with Image.open(chart) as im:
        assert im.format == "PNG" and im.size == (960, 640)


def test_a_failing_model_is_reported_in_its_row_and_the_others_still_run(zoo_dir):
    root, manifest = zoo_dir
    r = run_rdet("bench", "broken18", NAME, "--fps", "--zoo", manifest, "--cache-dir", root / "cache",
                 "--device", "cpu", "--images", "2", "--warmup", "1", "--size", "64x64", "--json", env_extra=ENV)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    rows = {row["model"]: row for row in json.loads(r.stdout)["results"]}
    assert list(rows) == ["broken18", NAME]  # the order asked for
    assert rows["broken18"]["fps"] is None and "not a loadable checkpoint" in rows["broken18"]["error"]
    assert rows["broken18"]["published_fps"] == 50.0 and rows["broken18"]["published_mem_gb"] is None
    assert rows[NAME]["fps"] > 0 and "error" not in rows[NAME] and rows[NAME]["mem_gb"] is None  # --fps only


@pytest.mark.parametrize("args, message", [
    (["--fps", "--plot", "chart.jpg"], "ending in .png"),
    (["--mem", "--plot", "chart.png"], "add --fps"),
    (["--size", "64"], "WIDTHxHEIGHT"),
    (["--images", "3", "--warmup", "3"], "nothing to time"),
    (["--ann", "a.json"], "go together"),
    (["--precision", "fp8"], "--precision must be one of"),
    (["--precision", "fp16", "--amp"], "--amp means --precision"),
])
def test_bad_options_stop_with_one_line(zoo_dir, args, message):
    _, manifest = zoo_dir
    r = run_rdet("bench", NAME, "--zoo", manifest, "--random-weights", "--device", "cpu", *args, env_extra=ENV)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_unknown_model_names_the_closest(zoo_dir):
    _, manifest = zoo_dir
    r = run_rdet("bench", "tiny19", "--zoo", manifest, "--random-weights", env_extra=ENV)
    assert r.returncode != 0 and "tiny18" in r.stderr and "Traceback" not in r.stderr


def test_table_output_without_json(zoo_dir):
    root, manifest = zoo_dir
    r = run_rdet("bench", NAME, "--fps", "--zoo", manifest, "--random-weights", "--device", "cpu", "--images", "2",
                 "--warmup", "1", "--size", "64x64", env_extra={**ENV, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert NAME in r.stdout and "published fps" in r.stdout and "100" in r.stdout and "ok" in r.stdout



def test_num_images_is_the_count_and_the_old_images_spelling_still_works_with_a_note(zoo_dir):
    _, manifest = zoo_dir
    base = ["bench", NAME, "--zoo", manifest, "--random-weights", "--device", "cpu", "--warmup", "3"]
    new = run_rdet(*base, "--num-images", "3", env_extra=ENV)
    assert new.returncode == 2 and "--num-images 3 leaves nothing to time" in new.stderr
    assert "deprecated" not in new.stderr
    old = run_rdet(*base, "--images", "3", env_extra=ENV)
    assert old.returncode == 2 and "--num-images 3 leaves nothing to time" in old.stderr
    assert "bench --images N is deprecated, use --num-images N" in old.stderr


def test_stages_detections_per_image_and_tf32_refused_on_the_cpu(zoo_dir):
    _, manifest = zoo_dir
    base = ["bench", NAME, "--fps", "--zoo", manifest, "--random-weights", "--device", "cpu", "--num-images", "3",
            "--warmup", "1", "--size", "96x64", "--json"]
    r = run_rdet(*base, "--stages", "--autotune", env_extra=ENV)  # --autotune: cuDNN's, a no-op on the CPU
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["provenance"]["autotune"] is True
    row = json.loads(r.stdout)["results"][0]
    assert row["detections_per_image"] > 10  # the calibrated random head: a trained model's post-processing load
    stages, latency = row["stages"]["stages_ms"], row["stages"]["latency_ms"]
    assert set(stages) == {"decode", "pre-process", "copy", "forward", "post-process"}
    assert all(v > 0 for v in stages.values()) and 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    tf32 = run_rdet(*base, "--precision", "tf32", env_extra=ENV)  # refused once, before any model is built
    assert tf32.returncode == 2 and tf32.stdout == "" and "Traceback" not in tf32.stderr
    assert tf32.stderr.strip().splitlines() == ["error: tf32 is a CUDA tensor-core mode (NVIDIA Ampere or later), not "
                                                "available on the CPU; use fp32 (or bf16 where the CPU has it)"]
