"""`rdet doctor`: one row per check, --json, and an exit code that says whether anything failed."""
import json

from cli_inprocess import rdet_here


def _checks(r):
    doc = json.loads(r.stdout)
    return doc, {c["name"]: c for c in doc["checks"]}


def test_a_healthy_offline_installation_passes(tmp_path, capsys, monkeypatch, rdet_env):
    r = rdet_here(capsys, monkeypatch, "doctor", "--json", "--offline", "--cache-dir", tmp_path / "cache")
    doc, checks = _checks(r)
    assert r.returncode == 0 and doc["ok"] is True, r.stdout
    assert {"rdet", "torch", "CUDA", "bf16", "OpenCV", "Pillow", "pycocotools", "faster-coco-eval", "cache",
            "free space", "lock files", "weights", "proxies", "mirror", "offline"} <= set(checks)
    assert checks["cache"]["status"] == "ok" and "writable" in checks["cache"]["detail"]
    assert checks["offline"]["status"] == "info" and "weights host" not in checks
    assert all(set(c) == {"name", "status", "detail"} and c["status"] in ("ok", "info", "warn", "fail")
               for c in doc["checks"])


def test_cache_problems_unreachable_host_and_a_missing_dataset_fail(tmp_path, capsys, monkeypatch, rdet_env,
                                                                      http_server):
    import zoo

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "someone.pth.lock").write_text("")  # left by a process that ended
    entry = zoo.get("r50_fpn_1x")
    (cache / entry.filename).write_bytes(b"corrupted since it was verified")
    env = {"RDET_MIRROR": "http://127.0.0.1:1"}  # connection refused: nothing listens on port 1
    r = rdet_here(capsys, monkeypatch, "doctor", "--json", "--verify", "--cache-dir", cache, "--data-root",
                  tmp_path / "nowhere", env=env)
    doc, checks = _checks(r)
    assert r.returncode == 1 and doc["ok"] is False
    assert checks["lock files"]["status"] == "warn" and "1 left over" in checks["lock files"]["detail"]
    assert checks["weights"]["status"] == "fail" and entry.filename in checks["weights"]["detail"]
    assert checks["weights host"]["status"] == "fail" and "127.0.0.1:1" in checks["weights host"]["detail"]
    assert checks["dataset"]["status"] == "fail"
    assert checks["mirror"]["detail"] == "RDET_MIRROR=http://127.0.0.1:1"
    r = rdet_here(capsys, monkeypatch, "doctor", "--cache-dir", tmp_path / "empty",
                  env={"RDET_MIRROR": http_server.base_url})
    assert r.returncode == 0, r.stdout
    assert "weights host" in r.stdout and "ready" in r.stdout.splitlines()[-1]
