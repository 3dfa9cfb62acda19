"""The first run (finding 1): `rdet demo` shows real detections when the weights can be had, and otherwise
completes on seeded random weights within seconds, saying so in one prominent line; random weights are seeded."""
import hashlib
import json
import time

import torch

import zoo
from cli_inprocess import rdet_here
from tiny_zoo import CLASSES, NAME, run_rdet, write_tiny_zoo

NOTICE = "NO REAL WEIGHTS"


def _demo_manifest(directory, url_for):
    """A user manifest whose r50_fpn_1x is the tiny depth-18 model (overriding the bundled entry by name), its
    checkpoint at `url_for(checkpoint_path)`."""
    manifest, ckpt = write_tiny_zoo(directory)
    text = manifest.read_text().replace(f'name = "{NAME}"', 'name = "r50_fpn_1x"').replace(
        'aliases = ["retinanet_tiny18"]', "aliases = []")
    text = text.replace(f'url = "{ckpt.as_uri()}"', f'url = "{url_for(ckpt)}"')
    manifest.write_text(text)
    return manifest, ckpt


def test_demo_without_a_reachable_host_runs_on_random_weights_and_says_so(tmp_path, rdet_env):
    manifest, _ = _demo_manifest(tmp_path / "zoo", lambda ckpt: f"http://127.0.0.1:1/{ckpt.name}")  # refused
    began = time.monotonic()
    r = run_rdet("demo", "--out", tmp_path / "demo", "--json", env_extra={"RDET_ZOO": str(manifest),
                                                                           "RDET_CACHE": str(rdet_env)})
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - began < 60  # no retries, no waiting on the network (the rest is imports on 2 cores)
    notices = [line for line in r.stderr.splitlines() if NOTICE in line]
    assert len(notices) == 1 and "rdet import r50_fpn_1x" in notices[0] and "RDET_MIRROR" in notices[0]
    assert (tmp_path / "demo" / "astronaut.jpg").is_file()
    doc = json.loads((tmp_path / "demo" / "predictions.json").read_text())
    assert doc["provenance"]["weights"] == {"source": "random", "seed": 0, "sha256": None}
    printed = json.loads(r.stdout)  # --json: the same document on stdout, and nothing else there
    assert printed["schema"] == "rdet-predict/1" and printed["images"] == doc["images"]
    assert "Traceback" not in r.stderr


def test_demo_downloads_verifies_and_uses_the_published_weights(tmp_path, rdet_env, http_server, capsys,
                                                                monkeypatch):
    served = {}

    def serve(ckpt):
        served["bytes"] = ckpt.read_bytes()
        return http_server.add(f"/w/{ckpt.name}", served["bytes"])

    manifest, ckpt = _demo_manifest(tmp_path / "zoo", serve)
    env = {"RDET_ZOO": str(manifest), "RDET_CACHE": str(rdet_env), "RDET_BACKOFF": "0.01"}
    r = rdet_here(capsys, monkeypatch, "demo", "--out", tmp_path / "demo", env=env)
    assert r.returncode == 0, r.stderr
    assert NOTICE not in r.stderr
    assert (rdet_env / ckpt.name).read_bytes() == served["bytes"]  # downloaded once into the cache, verified
    doc = json.loads((tmp_path / "demo" / "predictions.json").read_text())
    assert doc["provenance"]["weights"]["source"] == "zoo"
    assert doc["images"][0]["detections"] and {d["class"] for d in doc["images"][0]["detections"]} <= set(CLASSES)
    assert hashlib.sha256(served["bytes"]).hexdigest().startswith(doc["provenance"]["weights"]["sha256"])


def test_demo_offline_falls_back_without_touching_the_network(tmp_path, monkeypatch):
    from cli.demo_cmd import _weights_or_reason

    entry = zoo.get("r50_fpn_1x")
    monkeypatch.setattr("zoo.remote.probe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("probed")))
    assert _weights_or_reason(entry, tmp_path, offline=True, quiet=True) == (None, "offline mode (--offline or "
                                                                                   "RDET_OFFLINE)")


def test_random_weights_are_seeded_and_leave_the_callers_random_state_alone(tmp_path):
    manifest, _ = write_tiny_zoo(tmp_path)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = zoo.load(NAME, random_weights=True, device="cpu", zoo_file=manifest).model.state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    b = zoo.load(NAME, random_weights=True, device="cpu", zoo_file=manifest).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
