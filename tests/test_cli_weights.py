"""`rdet download / import / cache / list` as a user runs them: the installed CLI in a subprocess, weights served
by a real HTTP server on 127.0.0.1."""
import hashlib
import json

import pytest

from tiny_zoo import NAME, run_rdet, write_tiny_zoo


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifest, ckpt = write_tiny_zoo(root)
    return manifest, ckpt, ckpt.read_bytes()


@pytest.fixture
def served(http_server, tiny_files, tmp_path):
    """A manifest whose tiny18 URL points at the test server, and the environment that uses it."""
    manifest, ckpt, data = tiny_files
    url = http_server.add(f"/mmdetection/v2.0/{ckpt.name}", data)
    text = manifest.read_text().replace(ckpt.as_uri(), url)
    served_manifest = tmp_path / "served.toml"
    served_manifest.write_text(text)
    env = {"RDET_ZOO": str(served_manifest), "RDET_CACHE": str(tmp_path / "cache"), "RDET_BACKOFF": "0.01"}
    return http_server, ckpt, data, env, tmp_path / "cache"


def _json(r):
    assert "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout)


def test_download_list_verify_rm_cycle(served):
    server, ckpt, data, env, cache = served
    rows = _json(run_rdet("download", NAME, "--json", env_extra=env))
    assert rows[0]["status"] == "downloaded" and rows[0]["size"] == len(data)
    assert (cache / ckpt.name).read_bytes() == data
    again = _json(run_rdet("download", "retinanet_tiny18", "--json", env_extra=env))  # the alias works too
    assert again[0]["status"] == "already cached" and len(server.requests_for(f"/mmdetection/v2.0/{ckpt.name}")) == 1

    listed = {e["name"]: e for e in _json(run_rdet("list", "--json", env_extra=env))}
    assert listed[NAME]["cached"] is True and listed["r50_fpn_1x"]["cached"] is False
    assert listed["r50_fpn_1x"]["box_ap"] == 0.365  # a fraction, as in every JSON and listed["r50_fpn_2x"]["fps"] is None  # "-" stays absent

    r = run_rdet("cache", "verify", env_extra=env)
    assert r.returncode == 0, r.stderr
    with open(cache / ckpt.name, "r+b") as f:  # flip one byte: only a full re-hash can tell
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    r = run_rdet("cache", "verify", "--json", env_extra=env)
    assert r.returncode == 1 and _json(r)[0]["status"] == "bad"

    r = run_rdet("cache", "rm", NAME, env_extra=env)
    assert r.returncode == 0 and not (cache / ckpt.name).exists()


def test_offline_says_which_file_is_missing_and_how_to_get_it(served):
    server, ckpt, _, env, _ = served
    r = run_rdet("predict", "--model", NAME, "--offline", env_extra=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert ckpt.name in r.stderr and "rdet import" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert server.requests_for(f"/mmdetection/v2.0/{ckpt.name}") == []


def test_import_verifies_before_placing_the_file(served, tmp_path):
    _, ckpt, data, env, cache = served
    bad = tmp_path / "bad.pth"
    bad.write_bytes(data[:-10])
    r = run_rdet("import", NAME, bad, env_extra=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert hashlib.sha256(data[:-10]).hexdigest()[:8] in r.stderr or "checksum" in r.stderr.lower()
    assert not (cache / ckpt.name).exists()
    r = run_rdet("import", NAME, ckpt, env_extra=env)
    assert r.returncode == 0, r.stderr
    assert (cache / ckpt.name).read_bytes() == data and ckpt.exists()  # the user's file stays where it was


def test_missing_checkpoint_on_the_server_names_the_url_and_rdet_import(served, tmp_path):
    server, ckpt, _, env, _ = served
    server.add(f"/mmdetection/v2.0/{ckpt.name}", b"", status=404)
    r = run_rdet("download", NAME, env_extra=env)
    assert r.returncode == 1 and "404" in r.stderr and "rdet import" in r.stderr and "Traceback" not in r.stderr


def test_unknown_name_suggests_the_closest(served):
    r = run_rdet("download", "r50_fnp_1x", env_extra=served[3])
    assert r.returncode == 2 and "r50_fpn_1x" in r.stderr and "Traceback" not in r.stderr


def test_malformed_user_manifest_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\n[[model]]\nname = 'x'\nurl = 'http://h/x.pth'\nsha256 = 'zz'\ndepth = 18\n"
                   "style = 'pytorch'\n")
    r = run_rdet("list", "--zoo", bad)
    assert r.returncode == 2 and "sha256" in r.stderr and len(r.stderr.strip().splitlines()) == 1
