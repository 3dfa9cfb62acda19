"""zoo.download and zoo.weights against a real HTTP server on 127.0.0.1: resume, retries, verification, locking,
offline, mirrors, proxies, file:// URLs, import."""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

from http_server import payload
from zoo.cache import Cache, lock_path, part_path
from zoo.download import fetch
from zoo.lock import locked
from zoo.progress import LineProgress, TransferProgress, BarProgress
from zoo.settings import Policy, mirrored
from zoo.errors import DownloadError, ManifestError
from zoo.manifest import Entry
from zoo.weights import ensure_pretrained, ensure_weights, import_weights

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 16384
DATA, SHA = payload()
FULL_SHA = hashlib.sha256(DATA).hexdigest()  # pinned: no plain-http warning
FAST = {"backoff": 0.01, "chunk_size": CHUNK, "quiet": True}
# A separate process running fetch: argv = url, sha, dest. Progress on (not quiet) so stderr tells what happened.
FETCH_SCRIPT = ("import sys; from zoo.download import fetch; "
                "fetch(sys.argv[1], sys.argv[2], sys.argv[3], chunk_size=16384, backoff=0.01)")


def data_files(directory: Path) -> list[str]:
    """What a cache directory holds apart from the records of verified files (lock files must be gone)."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".verified")) \
        if directory.exists() else []


@pytest.fixture
def cache(rdet_env):
    return rdet_env


def test_plain_download_lands_verified_under_its_published_name(http_server, cache):
    url = http_server.add("/w/model-1234.pth", DATA)
    path = fetch(url, SHA, cache / "model-1234.pth", **FAST)
    assert path.read_bytes() == DATA
    assert data_files(cache) == ["model-1234.pth"]
    assert http_server.requests[0].headers["accept-encoding"] == "identity"


def test_dropped_connection_resumes_with_range(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, drop_after=4 * CHUNK)
    dest = cache / "m.pth"
    with pytest.raises(DownloadError, match="after 1 attempts"):
        fetch(url, SHA, dest, retries=0, **FAST)
    partial = part_path(dest).stat().st_size
    assert partial == 4 * CHUNK and part_path(dest).read_bytes() == DATA[:partial]
    assert not dest.exists()
    fetch(url, SHA, dest, retries=0, **FAST)
    second = http_server.requests_for("/w/m.pth")[1]
    assert second.range_start == partial and second.status == 206
    assert dest.read_bytes() == DATA and data_files(cache) == ["m.pth"]


def test_retry_after_a_partial_body_resumes_in_the_same_call(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, drop_after=3 * CHUNK, drops=2)
    fetch(url, SHA, cache / "m.pth", **FAST)
    starts = [r.range_start for r in http_server.requests_for("/w/m.pth")]
    assert starts == [None, 3 * CHUNK, 6 * CHUNK]
    assert http_server.bytes_sent("/w/m.pth") == len(DATA)
    assert (cache / "m.pth").read_bytes() == DATA


def test_server_error_then_success(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, fail=2)
    fetch(url, SHA, cache / "m.pth", **FAST)
    assert [r.status for r in http_server.requests] == [500, 500, 200]
    assert (cache / "m.pth").read_bytes() == DATA


def test_retries_are_bounded(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, fail=10, fail_status=503)
    with pytest.raises(DownloadError, match=r"after 3 attempts \(HTTP 503\)") as e:
        fetch(url, SHA, cache / "m.pth", retries=2, **FAST)
    assert url in str(e.value) and len(http_server.requests) == 3


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_errors_fail_at_once_and_leave_nothing(http_server, cache, status):
    entry = Entry("m", http_server.add("/w/m.pth", DATA, status=status), SHA, 50, "pytorch")
    with pytest.raises(DownloadError) as e:
        ensure_weights(entry, cache, **FAST)
    msg = str(e.value)
    assert f"HTTP {status} for {entry.url}" in msg and "`rdet import m FILE`" in msg and "\n" not in msg
    assert len(http_server.requests) == 1 and data_files(cache) == []


def test_checksum_mismatch_leaves_nothing_behind(http_server, cache):
    wrong, wrong_sha = payload(seed=1)
    url = http_server.add("/w/m.pth", wrong)
    with pytest.raises(DownloadError) as e:
        fetch(url, SHA, cache / "m.pth", **FAST)
    assert f"expected sha256 {SHA}…, got {wrong_sha}…" in str(e.value)
    assert data_files(cache) == []


def test_server_without_range_support_starts_over(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, drop_after=5 * CHUNK, ranges=False)
    fetch(url, SHA, cache / "m.pth", **FAST)
    second = http_server.requests_for("/w/m.pth")[1]
    assert second.range_start == 5 * CHUNK and second.status == 200  # asked to resume, got the whole file
    assert (cache / "m.pth").read_bytes() == DATA and data_files(cache) == ["m.pth"]


def test_read_timeout_mid_body_is_retried(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, stall=3, stall_after=2 * CHUNK)
    start = time.monotonic()
    fetch(url, SHA, cache / "m.pth", timeout=0.3, **FAST)
    assert time.monotonic() - start < 2.5
    reqs = http_server.requests_for("/w/m.pth")
    assert len(reqs) == 2 and reqs[1].range_start == 2 * CHUNK
    assert (cache / "m.pth").read_bytes() == DATA


def test_complete_part_left_by_a_crash_before_the_rename_is_used(http_server, cache):
    url = http_server.add("/w/m.pth", DATA)
    part_path(cache / "m.pth").parent.mkdir(parents=True)
    part_path(cache / "m.pth").write_bytes(DATA)
    fetch(url, SHA, cache / "m.pth", **FAST)
    assert [r.status for r in http_server.requests] == [416]
    assert (cache / "m.pth").read_bytes() == DATA and data_files(cache) == ["m.pth"]


def test_cached_file_is_used_without_any_request(http_server, cache):
    url = http_server.add("/w/m.pth", DATA)
    cache.mkdir()
    (cache / "m.pth").write_bytes(DATA)
    assert fetch(url, SHA, cache / "m.pth", offline=True, **FAST) == cache / "m.pth"
    assert http_server.requests == []


def test_offline_never_touches_the_network(http_server, cache, monkeypatch):
    entry = Entry("m", http_server.add("/w/m.pth", DATA), SHA, 50, "pytorch")
    with pytest.raises(DownloadError) as e:
        ensure_weights(entry, cache, offline=True)
    assert "m.pth" in str(e.value) and entry.url in str(e.value) and "`rdet import m FILE`" in str(e.value)
    monkeypatch.setenv("RDET_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline"):
        ensure_weights(entry, cache)
    assert http_server.requests == [] and data_files(cache) == []


def test_not_enough_disk_space(http_server, cache, monkeypatch):
    url = http_server.add("/w/m.pth", DATA)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("zoo.http_fetch.shutil.disk_usage", lambda _: usage(10**9, 0, 1000))
    with pytest.raises(DownloadError, match=f"need {len(DATA)} bytes .*, 1000 free"):
        fetch(url, SHA, cache / "m.pth", **FAST)
    assert data_files(cache) == []


def test_disk_space_check_counts_what_the_part_holds(http_server, cache, monkeypatch):
    url = http_server.add("/w/m.pth", DATA)
    cache.mkdir()
    part_path(cache / "m.pth").write_bytes(DATA[:100_000])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("zoo.http_fetch.shutil.disk_usage", lambda _: usage(10**9, 0, len(DATA) - 50_000))
    fetch(url, SHA, cache / "m.pth", **FAST)
    assert (cache / "m.pth").read_bytes() == DATA


def test_mirror_replaces_the_published_prefix(http_server, cache, monkeypatch):
    http_server.add("/mirror/mmdetection/v2.0/retinanet/m.pth", DATA)
    monkeypatch.setenv("RDET_MIRROR", http_server.url("/mirror/"))
    for scheme in ("http", "https"):
        fetch(f"{scheme}://download.openmmlab.com/mmdetection/v2.0/retinanet/m.pth", SHA, cache / scheme, **FAST)
        assert (cache / scheme).read_bytes() == DATA
    assert mirrored("https://download.pytorch.org/models/r.pth") == "https://download.pytorch.org/models/r.pth"


def test_proxy_variables_are_honoured(http_server, cache, monkeypatch):
    http_server.add("/models/resnet50-19c8e357.pth", DATA)
    monkeypatch.setenv("HTTP_PROXY", http_server.base_url)
    fetch("http://download.example.invalid/models/resnet50-19c8e357.pth", SHA, cache / "r.pth", **FAST)
    assert (cache / "r.pth").read_bytes() == DATA
    assert http_server.requests[0].headers["host"] == "download.example.invalid"


def test_file_urls_are_copied_and_verified(tmp_path, cache):
    src = tmp_path / "src.pth"
    src.write_bytes(DATA)
    assert fetch(src.as_uri(), SHA, cache / "a.pth", offline=True, **FAST).read_bytes() == DATA
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(src.as_uri(), "deadbeef", cache / "b.pth", **FAST)
    with pytest.raises(DownloadError, match="no such file"):
        fetch((tmp_path / "missing.pth").as_uri(), SHA, cache / "c.pth", **FAST)
    assert data_files(cache) == ["a.pth"]


def test_import_accepts_a_good_file_and_rejects_a_bad_one(tmp_path, cache):
    entry = Entry("m", "http://download.openmmlab.com/x/m-1234.pth", SHA, 50, "pytorch")
    bad, bad_sha = payload(seed=2)
    (tmp_path / "bad.pth").write_bytes(bad)
    with pytest.raises(DownloadError, match=f"expected sha256 {SHA}…, got {bad_sha}….*cache is unchanged"):
        import_weights(entry, tmp_path / "bad.pth", cache, quiet=True)
    assert data_files(cache) == []
    (tmp_path / "good.pth").write_bytes(DATA)
    path = import_weights(entry, tmp_path / "good.pth", cache, quiet=True)
    assert path == Cache(cache).path("m-1234.pth") and path.read_bytes() == DATA
    assert data_files(cache) == ["m-1234.pth"]


def test_ensure_pretrained(http_server, cache):
    url = http_server.add("/models/resnet50-abcd.pth", DATA)
    entry = Entry("m", "http://x.invalid/m.pth", "00000000", 50, "pytorch", pretrained_url=url,
                  pretrained_sha256=SHA)
    assert ensure_pretrained(entry, Cache(cache), **FAST) == cache / "resnet50-abcd.pth"
    with pytest.raises(ManifestError, match="no pretrained_url"):
        ensure_pretrained(Entry("n", url, SHA, 50, "pytorch"), cache)
    http_server.add("/models/gone.pth", status=404)
    entry = Entry("m", "http://x.invalid/m.pth", "00000000", 50, "pytorch",
                  pretrained_url=http_server.url("/models/gone.pth"), pretrained_sha256=SHA)
    with pytest.raises(DownloadError, match="rdet import --pretrained m FILE"):
        ensure_pretrained(entry, cache, **FAST)


def test_policy_from_arguments_and_environment(monkeypatch):
    monkeypatch.setenv("RDET_RETRIES", "2")
    monkeypatch.setenv("RDET_TIMEOUT", "7.5")
    monkeypatch.setenv("RDET_BACKOFF", "0.5")
    p = Policy.resolve()
    assert (p.retries, p.timeout, p.backoff) == (2, (7.5, 7.5), 0.5)
    assert [p.delay(i) for i in range(3)] == [0.5, 1.0, 2.0] and Policy(backoff=1).delay(20) == 60
    assert Policy.resolve(retries=0, timeout=(1, 2)).retries == 0
    monkeypatch.setenv("RDET_RETRIES", "many")
    with pytest.raises(DownloadError, match="RDET_RETRIES"):
        Policy.resolve()


def test_progress_lines_go_to_stderr_and_quiet_is_silent(http_server, cache, capsys):
    url = http_server.add("/w/m.pth", DATA, drop_after=4 * CHUNK)
    fetch(url, FULL_SHA, cache / "m.pth", progress=LineProgress(), backoff=0.01, chunk_size=CHUNK)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == ""
    assert lines[0] == "m.pth: fetching 300.0 KB" and lines[-1].startswith("m.pth: done, 300.0 KB")
    assert any("retry 1 of" in line for line in lines) and any("resuming at" in line for line in lines)
    assert sum("%" in line for line in lines) == 9  # 10%, 20% ... 90%
    fetch(http_server.add("/w/q.pth", DATA), FULL_SHA, cache / "q.pth", quiet=True)
    assert capsys.readouterr() == ("", "")


def test_rich_progress_bar_writes_to_stderr_only(http_server, cache, capsys):
    fetch(http_server.add("/w/m.pth", DATA), SHA, cache / "m.pth", progress=BarProgress())
    captured = capsys.readouterr()
    assert captured.out == "" and "m.pth" in captured.err


class _Interrupt(TransferProgress):
    """Presses Ctrl-C once `after` bytes are on disk."""

    def __init__(self, after):
        self.after = after

    def update(self, done):
        if done >= self.after:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_the_part_releases_the_lock_and_resumes(http_server, cache):
    url = http_server.add("/w/m.pth", DATA)
    dest = cache / "m.pth"
    with pytest.raises(KeyboardInterrupt):
        fetch(url, SHA, dest, progress=_Interrupt(5 * CHUNK), chunk_size=CHUNK)
    partial = part_path(dest).stat().st_size
    # every byte received is on disk: at least the 5 chunks (a socket read may return less than a chunk)
    assert 5 * CHUNK <= partial < len(DATA) and not dest.exists()
    assert not lock_path(dest).exists()  # released and removed
    fetch(url, SHA, dest, **FAST)
    assert http_server.requests[-1].range_start == partial and dest.read_bytes() == DATA


def test_waiter_reuses_the_file_written_while_it_waited(http_server, cache):
    url = http_server.add("/w/m.pth", DATA)
    dest = cache / "m.pth"
    cache.mkdir()
    result = {}
    with locked(dest):  # another process is writing dest
        waiter = threading.Thread(target=lambda: result.update(path=fetch(url, SHA, dest, **FAST)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive() and http_server.requests == []
        dest.write_bytes(DATA)
    waiter.join(10)
    assert result["path"] == dest and http_server.requests == []


def _spawn(url: str, dest: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", FETCH_SCRIPT, url, SHA, str(dest)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def test_two_processes_fetching_one_file_download_it_once(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, throttle=0.06, chunk=CHUNK)  # about 1.1 s per download
    dest = cache / "m.pth"
    procs = [_spawn(url, dest) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert len(http_server.requests_for("/w/m.pth")) == 1 and http_server.bytes_sent("/w/m.pth") == len(DATA)
    assert dest.read_bytes() == DATA and data_files(cache) == ["m.pth"]


def test_kill_9_mid_download_then_resume(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, throttle=0.05, chunk=CHUNK)
    dest = cache / "m.pth"
    proc = _spawn(url, dest)
    deadline = time.monotonic() + 120  # the child's imports are slow on a busy machine
    while not (part_path(dest).exists() and part_path(dest).stat().st_size >= 3 * CHUNK):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    partial = part_path(dest).stat().st_size
    assert 0 < partial < len(DATA) and part_path(dest).read_bytes() == DATA[:partial]
    http_server.add("/w/m.pth", DATA)  # full speed now
    fetch(url, SHA, dest, **FAST)
    assert http_server.requests_for("/w/m.pth")[-1].range_start == partial
    assert dest.read_bytes() == DATA and data_files(cache) == ["m.pth"]
