"""Issue #14 (trust) and #17 items 2 and 9, zoo side: each finding reproduced against a real HTTP server on
127.0.0.1, real files and real subprocesses, and the fixed behaviour shown. Finding numbers are #14's."""
import errno
import hashlib
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from http_server import RawServer, payload
from tiny_zoo import NAME, run_rdet, write_tiny_zoo
from zoo.cache import Cache, bad_path, lock_path, part_path, read_record, record_path
from zoo.download import fetch
from zoo.errors import CacheError, DownloadError, LockTimeoutError
from zoo.manifest import Entry
from zoo.progress import TransferProgress
from zoo.settings import Policy
from zoo.weights import (BAD, COMPLETE, FOREIGN, cache_contents, checkpoint_file, clear_cache, ensure_weights,
                         is_cached, recorded_digest, verify_file)

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 16384
DATA, SHA = payload()
FULL = hashlib.sha256(DATA).hexdigest()
FAST = {"backoff": 0.01, "chunk_size": CHUNK, "quiet": True}


@pytest.fixture
def cache(rdet_env):
    return rdet_env


def entry(name: str, url: str, sha: str) -> Entry:
    return Entry(name=name, url=url, sha256=sha, depth=18, style="pytorch", num_classes=3)


class Zoo:  # the part of zoo.manifest.Zoo that cache_contents uses
    def __init__(self, *entries):
        self.entries = entries

    def __iter__(self):
        return iter(self.entries)


# ---------------------------------------------------------------------------------------------------- finding 1

def test_1_cached_file_is_checked_against_the_full_digest_recorded_at_first_use(http_server, cache, monkeypatch,
                                                                                  capsys):
    """A file forged to the 8-digit prefix (simulated: the prefix check is made to pass, as a brute-forced file
    would) cannot replace a verified one: every use compares the full digest recorded at the first download."""
    url = http_server.add("/w/m-1234.pth", DATA)
    dest = fetch(url, SHA, cache / "m-1234.pth", **FAST)
    assert read_record(dest).sha256 == FULL and read_record(dest).url == url
    forged = payload(seed=7)[0]
    dest.write_bytes(forged)
    monkeypatch.setattr("zoo.checksum.matches", lambda digest, prefix: True)  # the forger matched the prefix
    with pytest.raises(DownloadError, match="offline"):
        fetch(url, SHA, dest, offline=True, **FAST)  # the forged file is set aside, never used
    assert bad_path(dest).read_bytes() == forged and not dest.exists()
    assert "failed verification" in capsys.readouterr().err
    path = fetch(url, SHA, dest, **FAST)  # the real one is fetched again, superseding the set-aside copy
    assert path.read_bytes() == DATA and not bad_path(dest).exists() and len(http_server.requests) == 2


def test_1_full_digest_in_the_manifest_is_used_and_shown(http_server, cache):
    url = http_server.add("/w/m.pth", DATA)
    with pytest.raises(DownloadError, match=f"expected sha256 {'0' * 64}, got {FULL}"):
        fetch(url, "0" * 64, cache / "m.pth", **FAST)
    fetch(url, FULL, cache / "m.pth", **FAST)
    wf = checkpoint_file(entry("m", url, SHA))
    assert recorded_digest(wf, cache) == FULL and is_cached(wf, cache)
    [item] = cache_contents(Zoo(entry("m", url, SHA)), cache)
    verdict = verify_file(item).to_dict()
    assert verdict["status"] == "ok" and verdict["sha256"] == FULL and verdict["pinned"] is False
    [pinned] = cache_contents(Zoo(entry("m", url, FULL)), cache)
    assert verify_file(pinned).to_dict()["pinned"] is True


def test_1_plain_http_with_only_a_prefix_is_warned_about_even_when_quiet(http_server, cache, capsys):
    url = http_server.add("/w/m.pth", DATA)
    fetch(url, SHA, cache / "m.pth", **FAST)
    assert "plain http" in capsys.readouterr().err
    fetch(http_server.add("/w/n.pth", DATA), FULL, cache / "n.pth", **FAST)
    assert capsys.readouterr().err == ""


def test_1_bundled_manifest_is_https_only():
    text = (ROOT / "zoo.toml").read_text()
    assert "http://" not in text and text.count('url = "https://') == 30


# ---------------------------------------------------------------------------------------------------- finding 2

def test_2_another_manifests_file_of_the_same_name_never_stands_in(http_server, cache):
    good = entry("r50", http_server.add("/a/ckpt.pth", DATA), SHA)
    evil_data, evil_sha = payload(seed=3)
    evil = entry("evil", http_server.add("/b/ckpt.pth", evil_data), evil_sha)
    ensure_weights(evil, cache, **FAST)
    wf = checkpoint_file(good)
    assert not is_cached(wf, cache)  # `rdet list` says r50 is not cached
    [item] = cache_contents(Zoo(good), cache)
    assert item.state == FOREIGN and verify_file(item).ok is None  # not "ok" for r50's manifest
    assert ensure_weights(good, cache, **FAST).read_bytes() == DATA  # predict fetches r50's own file
    [item] = cache_contents(Zoo(good, evil), cache)
    assert item.state == COMPLETE and item.names == ["r50"]


# ---------------------------------------------------------------------------------------------------- finding 3

def test_3_trickling_server_hits_the_deadline_and_keeps_what_it_sent(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, chunk=1, throttle=0.05)  # 20 bytes/s: hours for 300 KB
    began = time.monotonic()
    with pytest.raises(DownloadError, match=r"within 1 s \(RDET_DEADLINE\)"):
        fetch(url, FULL, cache / "m.pth", deadline=1, min_rate=0, **FAST)
    assert time.monotonic() - began < 5
    assert 0 < part_path(cache / "m.pth").stat().st_size < 100  # kept for a resume


def test_3_transfer_under_the_minimum_rate_is_dropped_and_retried(http_server, cache, monkeypatch):
    url = http_server.add("/w/m.pth", DATA, chunk=1, throttle=0.02)
    monkeypatch.setenv("RDET_MIN_RATE", "1000")
    monkeypatch.setenv("RDET_RATE_WINDOW", "0.3")
    with pytest.raises(DownloadError, match=r"after 2 attempts \(too slow"):
        fetch(url, FULL, cache / "m.pth", retries=1, **FAST)
    assert len(http_server.requests) == 2 and http_server.requests[1].range_start > 0


def test_3_weights_sent_compressed_against_the_request_are_refused_before_anything_is_written(http_server, cache):
    import gzip

    # 60 KB on the wire, 60 MB decoded: a disk-filling bomb if the body were decoded into the .part
    url = http_server.add("/w/m.pth", gzip.compress(bytes(60_000_000), 9), headers={"Content-Encoding": "gzip"})
    with pytest.raises(DownloadError, match=r"m\.pth came gzip-encoded, though rdet asked for the file itself"):
        fetch(url, SHA, cache / "m.pth", **FAST)
    assert http_server.requests[0].headers["accept-encoding"] == "identity" and len(http_server.requests) == 1
    assert not part_path(cache / "m.pth").exists() and not (cache / "m.pth").exists()


def test_3_a_body_without_a_length_stops_before_the_disk_is_full(http_server, cache, monkeypatch):
    import shutil

    import zoo.http_fetch

    # an endless body, scaled down: the disk "fills" 2 MB from now, checked every 256 KB
    monkeypatch.setattr(zoo.http_fetch, "DISK_RESERVE", shutil.disk_usage(cache.parent).free - 2_000_000)
    monkeypatch.setattr(zoo.http_fetch, "_SPACE_CHECK_EVERY", 256 * 1024)
    url = http_server.add("/w/m.pth", bytes(20_000_000), no_length=True)
    with pytest.raises(DownloadError, match=r"stopped m\.pth: the server gave no length and the disk .* is down to"):
        fetch(url, SHA, cache / "m.pth", **FAST)
    assert http_server.bytes_sent("/w/m.pth") < 20_000_000 and len(http_server.requests) == 1
    assert not part_path(cache / "m.pth").exists()


_HOLD_LOCK = ("import sys, time; from pathlib import Path; from zoo.lock import locked\n"
              "with locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(30)")


def test_3_lock_wait_is_bounded_and_announced_even_when_quiet(http_server, cache, capsys):
    cache.mkdir()
    dest = cache / "m.pth"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(dest)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LockTimeoutError, match="RDET_LOCK_TIMEOUT") as info:
            fetch(http_server.add("/w/m.pth", DATA), FULL, dest, lock_timeout=0.3, **FAST)
        assert info.value.exit_code == 75 and http_server.requests == []
        assert "waiting up to 0.3 s for another rdet process" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_3_lock_timeout_from_the_cli_is_a_message_and_an_exit_code(http_server, tmp_path):
    manifest, ckpt = write_tiny_zoo(tmp_path / "zoo")
    cache = tmp_path / "cache"
    cache.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(cache / ckpt.name)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline() == "held\n"
        r = run_rdet("download", NAME, "--quiet", "--json", env_extra={
            "RDET_ZOO": str(manifest), "RDET_CACHE": str(cache), "RDET_LOCK_TIMEOUT": "0.5"})
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "waiting up to 0.5 s" in r.stderr and "RDET_LOCK_TIMEOUT" in json.loads(r.stdout)[0]["error"]


# ---------------------------------------------------------------------------------------------------- finding 4

@pytest.mark.parametrize("where", ["/dev/null", "a-file"])
def test_4_cache_that_is_not_a_directory_is_one_line(where, tmp_path):
    manifest, _ = write_tiny_zoo(tmp_path / "zoo")
    if where == "a-file":
        where = tmp_path / "a-file"
        where.write_text("x")
    r = run_rdet("download", NAME, env_extra={"RDET_ZOO": str(manifest), "RDET_CACHE": str(where)})
    assert r.returncode == 1 and "Traceback" not in r.stderr and "not a directory" in r.stderr


@pytest.mark.parametrize("relative", ["weights", "./weights"])
def test_4_relative_rdet_cache_is_refused(relative, monkeypatch):
    monkeypatch.setenv("RDET_CACHE", relative)
    with pytest.raises(CacheError, match="absolute path"):
        Cache()
    with pytest.raises(CacheError, match="absolute path"):
        Cache(Path(relative))  # as the CLI passes it (--cache-dir reads RDET_CACHE)
    monkeypatch.delenv("RDET_CACHE")
    assert Cache(Path(relative)).root == Path.cwd() / "weights"  # an explicit --cache-dir is the user's choice


def _limited(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("how", ["import", "file-url"])
def test_4_full_disk_during_import_or_file_download_is_one_line_and_leaves_nothing(how, tmp_path):
    manifest, ckpt = write_tiny_zoo(tmp_path / "zoo")
    cache = tmp_path / "cache"
    args = ("import", NAME, ckpt) if how == "import" else ("download", NAME)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RDET_")}, "RDET_ZOO": str(manifest),
           "RDET_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=ROOT, preexec_fn=_limited(ckpt.stat().st_size // 2), timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "File too large" in r.stderr and [p.name for p in cache.iterdir()] == []


def test_4_read_only_cache_is_one_line(http_server, cache, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("retinanet.process_lock.os.open", read_only)  # the first write anywhere in the cache
    with pytest.raises(CacheError, match="Read-only file system"):
        fetch(http_server.add("/w/m.pth", DATA), FULL, cache / "m.pth", **FAST)


def test_4_part_deleted_mid_download_is_one_line(http_server, cache):
    dest = cache / "m.pth"

    class DeleteThePart(TransferProgress):
        def update(self, done):
            if done > 3 * CHUNK:
                part_path(dest).unlink(missing_ok=True)

    url = http_server.add("/w/m.pth", DATA)
    with pytest.raises(CacheError, match="vanished"):
        fetch(url, FULL, dest, progress=DeleteThePart(), chunk_size=CHUNK)
    assert not dest.exists()


def test_4_cache_rm_on_a_file_it_cannot_remove_is_one_line(cache, monkeypatch):
    cache.mkdir()
    (cache / "m.pth").write_bytes(DATA)

    def refuse(self, missing_ok=False):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(CacheError, match="cannot remove .*Permission denied"):
        clear_cache(Zoo(entry("m", "https://example.org/m.pth", SHA)), cache)


# ---------------------------------------------------------------------------------------------------- finding 10

def test_10_every_byte_received_before_a_drop_is_kept(http_server, cache):
    cut = 4 * CHUNK + 123  # not a multiple of any read size
    url = http_server.add("/w/m.pth", DATA, drop_after=cut)
    with pytest.raises(DownloadError):
        fetch(url, FULL, cache / "m.pth", retries=0, backoff=0.01, quiet=True)  # 1 MiB reads by default
    assert part_path(cache / "m.pth").read_bytes() == DATA[:cut]


def test_10_content_length_that_overstates_the_body_completes(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, overstate=1000)
    assert fetch(url, FULL, cache / "m.pth", retries=2, **FAST).read_bytes() == DATA
    assert len(http_server.requests) == 1


def test_10_body_without_length_cut_midway_is_resumed_not_deleted(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, no_length=True, drop_after=5 * CHUNK)
    assert fetch(url, FULL, cache / "m.pth", **FAST).read_bytes() == DATA
    assert [r.range_start for r in http_server.requests] == [None, 5 * CHUNK]


def test_10_body_without_length_that_is_whole_but_wrong_is_a_mismatch(http_server, cache):
    url = http_server.add("/w/m.pth", payload(seed=5)[0], no_length=True)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(url, FULL, cache / "m.pth", **FAST)
    assert not part_path(cache / "m.pth").exists() and len(http_server.requests) == 2  # asked once for more


# ---------------------------------------------------------------------------------------------------- finding 12

@pytest.mark.parametrize("value", ["0", "nan", "1e400", "-1", "inf", "x"])
def test_12_bad_rdet_timeout_is_one_line(value, monkeypatch):
    monkeypatch.setenv("RDET_TIMEOUT", value)
    with pytest.raises(DownloadError, match="RDET_TIMEOUT must be a finite number above 0"):
        Policy.resolve()


def test_12_bad_timeout_from_the_cli_is_one_line(tmp_path):
    manifest, _ = write_tiny_zoo(tmp_path / "zoo")
    r = run_rdet("download", NAME, env_extra={"RDET_ZOO": str(manifest), "RDET_CACHE": str(tmp_path / "c"),
                                              "RDET_TIMEOUT": "nan"})
    assert r.returncode == 1 and "Traceback" not in r.stderr and "RDET_TIMEOUT" in r.stderr


def test_12_credentials_in_rdet_mirror_are_never_printed(http_server, cache, monkeypatch):
    host = http_server.base_url.removeprefix("http://")
    monkeypatch.setenv("RDET_MIRROR", f"http://alice:s3cret@{host}/mirror")
    with pytest.raises(DownloadError) as info:
        fetch("https://download.openmmlab.com/x/m.pth", FULL, cache / "m.pth", **FAST)
    assert "HTTP 404" in str(info.value) and "s3cret" not in str(info.value) and "***@" in str(info.value)
    assert http_server.requests[0].headers["authorization"].startswith("Basic ")  # the credentials were used


def test_12_cache_rm_all_goes_past_a_busy_file(cache):
    from zoo.lock import locked

    cache.mkdir()
    entries = [entry(n, f"https://example.org/{n}.pth", SHA) for n in ("a", "b", "c")]
    for e in entries:
        (cache / e.filename).write_bytes(b"x")
    failed = []
    with locked(cache / "b.pth"):
        removed = clear_cache(Zoo(*entries), cache, failed=failed)
    assert sorted(p.name for p in removed) == ["a.pth", "c.pth"] and (cache / "b.pth").exists()
    assert len(failed) == 1 and "being written by another rdet process" in str(failed[0])


# ---------------------------------------------------------------------------------------------------- #17 item 2

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_17_2_refused_connection_fails_at_once(cache):
    began = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch(f"http://127.0.0.1:{_closed_port()}/m.pth", FULL, cache / "m.pth", quiet=True)  # default 5 retries
    assert time.monotonic() - began < 2 and "refused the connection" in str(info.value)


def test_17_2_dns_failure_fails_at_once_with_a_clean_message(cache, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    began = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch("https://nosuch.example/m.pth", FULL, cache / "m.pth", quiet=True)
    message = str(info.value)
    assert time.monotonic() - began < 2 and "cannot resolve the host name nosuch.example" in message
    assert '"' not in message and "))" not in message and "Errno" not in message  # no nested reprs


def test_17_2_transient_failures_are_retried_with_backoff(http_server, cache):
    url = http_server.add("/w/m.pth", DATA, fail=2, fail_status=503)
    began = time.monotonic()
    fetch(url, FULL, cache / "m.pth", backoff=0.2, quiet=True)
    assert [r.status for r in http_server.requests] == [503, 503, 200] and time.monotonic() - began >= 0.6


# ---------------------------------------------------------------------------------------------------- #17 item 9

def test_17_9_a_file_failing_verification_is_never_used_and_list_agrees(http_server, cache, capsys):
    e = entry("m", http_server.add("/w/m.pth", DATA), SHA)
    dest = ensure_weights(e, cache, **FAST)
    with open(dest, "r+b") as f:  # one flipped byte: only a re-hash can tell
        f.seek(1000)
        f.write(bytes([DATA[1000] ^ 1]))
    [item] = cache_contents(Zoo(e), cache)
    verdict = verify_file(item)
    assert verdict.ok is False and "failed verification" in verdict.problem
    [item] = cache_contents(Zoo(e), cache)
    assert item.state == BAD and not is_cached(checkpoint_file(e), cache)  # `cache list` agrees with verify
    assert ensure_weights(e, cache, **FAST).read_bytes() == DATA  # predict fetches it again, never uses it


def test_17_9_use_of_a_corrupted_file_fetches_it_again(http_server, cache, capsys):
    e = entry("m", http_server.add("/w/m.pth", DATA), SHA)
    dest = ensure_weights(e, cache, **FAST)
    dest.write_bytes(DATA[:-1] + bytes([DATA[-1] ^ 1]))
    assert ensure_weights(e, cache, **FAST).read_bytes() == DATA
    assert "failed verification" in capsys.readouterr().err


def test_17_9_lock_files_are_removed_when_released(http_server, cache):
    from zoo.lock import locked

    dest = fetch(http_server.add("/w/m.pth", DATA), FULL, cache / "m.pth", **FAST)
    assert not lock_path(dest).exists()
    with locked(dest):
        assert lock_path(dest).exists()
    assert not lock_path(dest).exists()
    lock_path(dest).write_text("")  # left by a process killed with -9: not held, reused and removed
    with locked(dest, wait=False):
        pass
    assert sorted(p.name for p in cache.iterdir()) == ["m.pth", record_path(dest).name]


# ---------------------------------------------------------------------------------------------------- nothing lost

def test_a_failing_run_never_damages_a_verified_file(http_server, cache):
    """Another entry's failing download (404, a wrong file, a full disk) leaves the verified file and its
    record as they were."""
    mine = entry("mine", http_server.add("/a/ckpt.pth", DATA), SHA)
    dest = ensure_weights(mine, cache, **FAST)
    record = read_record(dest)
    broken = entry("other", http_server.url("/missing/ckpt.pth"), SHA)
    with pytest.raises(DownloadError, match="HTTP 404"):
        ensure_weights(broken, cache, **FAST)
    wrong = entry("wrong", http_server.add("/w/ckpt.pth", payload(seed=9)[0]), SHA)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        ensure_weights(wrong, cache, **FAST)
    assert dest.read_bytes() == DATA and read_record(dest) == record and is_cached(checkpoint_file(mine), cache)


@pytest.mark.parametrize("name", ["a.pth", "retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth", "x.tar.gz"])
def test_every_cache_companion_maps_back_to_its_file(name, tmp_path):
    from zoo.cache import final_name

    dest = tmp_path / name
    companions = [part_path(dest), lock_path(dest), record_path(dest), bad_path(dest),
                  dest.with_name(f"{name}.k3j2.tmp"), dest.with_name(f"{name}.123-record.tmp")]
    assert {final_name(p) for p in companions} == {name} and final_name(dest) == name


def test_a_read_only_cache_filled_by_an_older_rdet_stays_usable(cache, monkeypatch):
    cache.mkdir()
    (cache / "m.pth").write_bytes(DATA)  # verified when it took its name, no record yet

    def read_only(*args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("zoo.checksum.write_record", read_only)
    assert fetch("https://unreachable.invalid/m.pth", SHA, cache / "m.pth", offline=True, **FAST) == cache / "m.pth"


# ---------------------------------------------------------------------------------------------------- properties

@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30),
       st.sampled_from(["RDET_TIMEOUT", "RDET_RETRIES", "RDET_BACKOFF", "RDET_DEADLINE", "RDET_MIN_RATE",
                        "RDET_RATE_WINDOW", "RDET_LOCK_TIMEOUT"]))
def test_12_any_setting_value_is_a_usable_number_or_one_line_error(value, name):
    os.environ[name] = value
    try:
        policy = Policy.resolve()
    except DownloadError as e:
        assert name in str(e) and "\n" not in str(e)
    else:
        numbers = [policy.retries, policy.backoff, *policy.timeout, policy.deadline, policy.min_rate,
                   policy.rate_window, policy.lock_timeout]
        assert all(n >= 0 and n < float("inf") for n in numbers) and min(policy.timeout) > 0
    finally:
        del os.environ[name]


@given(st.text(alphabet=st.characters(blacklist_characters="@/:?#[]%", blacklist_categories=("Cs", "Cc")),
               min_size=1, max_size=12))
def test_12_credentials_never_survive_redaction(secret):
    from zoo.settings import redacted

    for url in (f"https://user:{secret}@mirror.example/x", f"https://{secret}@mirror.example/x"):
        assert redacted(url) == "https://***@mirror.example/x"


# ---------------------------------------------------------------------------------------------------- hostile servers

def _answer(*headers: str, status: str = "200 OK", body: bytes = b""):
    """A RawServer reply: one HTTP answer with exactly these header lines (latin-1, as HTTP sends them)."""
    head = "".join(f"{h}\r\n" for h in (f"HTTP/1.1 {status}", *headers, "Connection: close", ""))
    return lambda request: [head.encode("latin-1"), body]


def _image_error(url: str) -> str:
    from zoo.remote import fetch_image_bytes

    with pytest.raises(DownloadError) as info:
        fetch_image_bytes(url)
    return str(info.value)


@pytest.mark.parametrize("length", ["\xb2", "\xb3\xb9", " 300000 "])  # '²' passes str.isdigit, not int()
def test_header_numbers_are_read_as_ascii_digits_only(length, cache):
    from zoo.remote import fetch_image_bytes

    with RawServer(_answer(f"Content-Length: {length}", body=DATA)) as server:
        assert fetch(server.url("m.pth"), FULL, cache / "m.pth", **FAST).read_bytes() == DATA
        assert fetch_image_bytes(server.url("a.jpg")) == DATA


def test_a_416_with_a_junk_total_is_no_crash(cache):
    def reply(request):
        if b"Range:" not in request:  # the first answer breaks off
            return _answer("Content-Length: 300000", body=DATA[:1000])(request)
        return _answer("Content-Range: bytes */\xb2", "Content-Length: 0", status="416 Range Not Satisfiable")(request)

    with RawServer(reply) as server, pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(server.url("m.pth"), FULL, cache / "m.pth", retries=1, **FAST)
    assert not (cache / "m.pth").exists() and not part_path(cache / "m.pth").exists()


@pytest.mark.parametrize("reply, words", [
    (lambda request: [], "the server closed the connection without answering"),
    (lambda request: [b"\x00\x01 garbage\r\n\r\n"], "the server's answer is not HTTP"),
    (lambda request: [DATA[:500]], "the server's answer is not HTTP"),  # HTTP/0.9: a bare body
    (_answer(*[f"X-{i}: y" for i in range(1000)]), "not a valid HTTP answer (got more than 100 headers)"),
    (_answer("X-Big: " + "a" * 2_000_000), "the server sent a header line over 64 KB"),
    (_answer("Transfer-Encoding: chunked", body=b"zz\r\nabc\r\n0\r\n\r\n"), "connection broken mid-body"),
])
def test_an_answer_that_is_not_http_is_named_in_one_line(reply, words, cache):
    with RawServer(reply) as server:
        assert _image_error(server.url("a.jpg")).endswith(f"cannot download ({words})")
        with pytest.raises(DownloadError, match=re.escape(f"after 2 attempts ({words})")):
            fetch(server.url("m.pth"), FULL, cache / "m.pth", retries=1, **FAST)
    assert not (cache / "m.pth").exists()


def test_tls_to_a_plain_http_port_is_one_line(http_server, cache):
    from zoo.remote import probe

    url = http_server.add("/m.pth", DATA).replace("http://", "https://")
    words = "TLS failed: wrong version number (a plain http server on an https URL?)"
    with pytest.raises(DownloadError, match=re.escape(words)):
        fetch(url, FULL, cache / "m.pth", retries=0, **FAST)
    assert words in _image_error(url) and probe(url, timeout=1).detail == words


def test_headers_sent_a_byte_at_a_time_stop_at_the_deadline(cache, monkeypatch):
    """Each byte comes well within RDET_TIMEOUT, so only the deadline can end it; it applies before the body."""
    def slowloris(request):
        yield b"HTTP/1.1 200 OK\r\n"
        for _ in range(100):
            time.sleep(0.1)
            yield b"X: y\r\n"

    monkeypatch.setenv("RDET_DEADLINE", "1")
    with RawServer(slowloris) as server:
        began = time.monotonic()
        assert _image_error(server.url("a.jpg")).endswith("not read within 1 s (RDET_DEADLINE)")
        with pytest.raises(DownloadError, match=r"within 1 s \(RDET_DEADLINE\); nothing received: run again"):
            fetch(server.url("m.pth"), FULL, cache / "m.pth", **FAST)
        assert time.monotonic() - began < 4  # the server would go on for 10 s each
        assert not part_path(cache / "m.pth").exists()  # was: an empty .part, "0 B kept"
        for var in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", server.base_url)  # a proxy as slow, answering an https CONNECT
        assert _image_error("https://example.invalid/a.jpg").endswith("not read within 1 s (RDET_DEADLINE)")
        # any: another library's thread in this worker may also send a request through the proxy set here
        assert any(r.startswith(b"CONNECT example.invalid:443") for r in server.requests)
    assert not (cache / "m.pth").exists()


@pytest.mark.parametrize("location, shown", [
    ("file:///etc/passwd", "'file:///etc/passwd'"),
    ("ftp://alice:s3cret@ftp.example/m.pth", "'ftp://***@ftp.example/m.pth'"),
    ("javascript:alert(1)", "'javascript:alert(1)'"),
    ("http://[::1/m.pth", "'http://[::1/m.pth'"),
    ("http://a..b/m.pth", "'http://a..b/m.pth'"),
])
def test_a_redirect_to_anything_but_a_valid_http_url_is_refused_at_once(location, shown, cache):
    from zoo.remote import probe

    with RawServer(_answer(f"Location: {location}", "Content-Length: 0", status="302 Found")) as server:
        words = f"the server redirected to {shown}, not a valid http(s) URL"
        with pytest.raises(DownloadError, match=re.escape(words)) as info:
            fetch(server.url("m.pth"), FULL, cache / "m.pth", **FAST)  # 5 retries by default: none is made
        assert len(server.requests) == 1 and "s3cret" not in str(info.value)
        assert words in _image_error(server.url("a.jpg")) and probe(server.url("m.pth"), timeout=1).detail == words


def test_redirects_rdet_follows_and_those_it_names(http_server, cache):
    from zoo.http_session import redirect_problem

    target = http_server.add("/w/m.pth", DATA)
    with RawServer(_answer("Location: " + target, "Content-Length: 0", status="301 Moved")) as server:
        assert fetch(server.url("m.pth"), FULL, cache / "m.pth", **FAST).read_bytes() == DATA
    with RawServer(_answer("Location: /again", "Content-Length: 0", status="302 Found")) as server:
        assert "more than 30 redirects (a redirect loop?)" in _image_error(server.url("a.jpg"))
    with RawServer(_answer("Location: http://127.0.0.1:1/m.pth", "Content-Length: 0", status="302 Found")) as server:
        assert _image_error(server.url("a.jpg")).endswith("(127.0.0.1 refused the connection)")
    with RawServer(_answer("Location: /\xff", "Content-Length: 0", status="302 Found")) as server:
        assert "redirected to a Location that is not UTF-8 text" in _image_error(server.url("a.jpg"))
    assert redirect_problem("https://a.example/x", "/y") is None
    assert redirect_problem("http://a.example/x", "https://b.example/y") is None
    assert redirect_problem("https://a.example/x", "http://u:pw@b.example/y") == (
        "the server redirected from https to plain http (http://***@b.example/y), which rdet does not follow")
    assert redirect_problem("https://a.example/x", "//b.example/y") is None  # the scheme is kept


@pytest.mark.parametrize("proxy, words", [
    ("http://[::1", "the proxy 'http://[::1' (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) is not a valid http(s) URL"),
    ("http://alice:s3cret@127.0.0.1:99999",
     "the proxy 'http://***@127.0.0.1:99999' (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) is not a valid http(s) URL"),
    ("ftp://proxy.example", "the proxy 'ftp://proxy.example' (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) is not a valid"),
    ("http://alice:s3cret@127.0.0.1:{closed}",  # a port filled in by the test: ids must not vary between workers
     "the proxy 127.0.0.1 (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) refused the connection"),
])
def test_a_bad_proxy_setting_is_named_without_its_credentials(proxy, words, http_server, cache, monkeypatch):
    from zoo.remote import probe

    url = http_server.add("/w/m.pth", DATA)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("HTTP_PROXY", proxy.replace("{closed}", str(_closed_port())))
    began = time.monotonic()
    with pytest.raises(DownloadError, match=re.escape(words)) as info:
        fetch(url, FULL, cache / "m.pth", **FAST)  # not retried
    assert time.monotonic() - began < 2 and "s3cret" not in str(info.value) and http_server.requests == []
    assert words in _image_error(url) and words in probe(url, timeout=1).detail


def test_a_206_that_starts_elsewhere_than_asked_starts_over(cache):
    """A part of the file is never written where the whole file goes (nor a part where the rest goes)."""
    def reply(request):
        if b"Range:" in request:
            return _answer("Content-Length: 300000", body=DATA)(request)
        return _answer("Content-Range: bytes 1000-299999/300000", "Content-Length: 299000",
                       status="206 Partial Content", body=DATA[1000:])(request)

    with RawServer(reply) as server, pytest.raises(DownloadError, match=r"the server answered a different range "
                                                                         r"\(1000\), starting over"):
        fetch(server.url("m.pth"), FULL, cache / "m.pth", retries=0, **FAST)
    assert not part_path(cache / "m.pth").exists()


def test_a_probe_whose_head_never_answers_returns_in_time():
    from zoo.remote import probe

    def silent(request):
        time.sleep(5)
        return []

    with RawServer(silent) as server:
        began = time.monotonic()
        result = probe(server.url("m.pth"), timeout=0.3)
        assert not result.ok and result.detail == "timed out" and time.monotonic() - began < 1.5


def test_a_web_page_without_a_length_from_a_server_ignoring_ranges_is_a_mismatch_not_kept(http_server, cache):
    """A directory listing where the file should be: asked once for more, answered the same page again, it is
    the server's whole answer. Before, each retry rewrote it and the page was kept as a .part to 'resume'."""
    url = http_server.add("/w/", b"<html>Index of /w/</html>", no_length=True, ranges=False,
                          headers={"Content-Type": "text/html"})
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(url, FULL, cache / "m.pth", **FAST)
    assert len(http_server.requests) == 2 and not part_path(cache / "m.pth").exists()
    http_server.add("/w/", DATA)  # the server fixed: the next run succeeds
    assert fetch(url, FULL, cache / "m.pth", **FAST).read_bytes() == DATA


@pytest.mark.parametrize("mirror, words", [
    ("https://mirror.example/base?token=1", "a base URL without a ?query or #fragment"),
    ("https://mirror.example/base#x", "a base URL without a ?query or #fragment"),
    ("https://mirror.example/base?", "a base URL without a ?query or #fragment"),
    ("https://mir ror.example/base", "an http(s) or file URL"),
    ("https://mirror\x07.example/base", "an http(s) or file URL"),
])
def test_an_rdet_mirror_that_would_fetch_another_url_is_refused_up_front(mirror, words, http_server, cache,
                                                                         monkeypatch):
    """Before, '?token=1' took the file's path into the query (another URL was asked) and a space in the host
    passed the check and failed only at download time."""
    monkeypatch.setenv("RDET_MIRROR", mirror)
    with pytest.raises(DownloadError, match=re.escape(f"RDET_MIRROR must be {words}")):
        fetch("https://download.openmmlab.com/x/m.pth", FULL, cache / "m.pth", **FAST)


def test_a_resume_whose_headers_the_deadline_cuts_short_keeps_the_partial_file(cache, monkeypatch):
    """Cut before its Content-Range came, a 206 looked like 'a range we did not ask for', and the .part was
    deleted (gigabytes of a resume lost to a slow proxy)."""
    def slow_206(request):
        yield b"HTTP/1.1 206 Partial Content\r\n"
        for _ in range(100):
            time.sleep(0.1)
            yield b"X: y\r\n"

    cache.mkdir()
    part_path(cache / "m.pth").write_bytes(DATA[:1000])
    kept = r"within 1 s \(RDET_DEADLINE\); 1\.0 KB kept"
    with RawServer(slow_206) as server, pytest.raises(DownloadError, match=kept):
        fetch(server.url("m.pth"), FULL, cache / "m.pth", deadline=1, **FAST)
    assert part_path(cache / "m.pth").read_bytes() == DATA[:1000]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60) | st.sampled_from(["//h/x", "http://[::1", "https://u:p@h/x", "http://h:99999/", "/\n"]))
def test_any_location_header_is_followed_only_as_a_valid_url_or_refused_in_one_line(location):
    from urllib.parse import urljoin

    from zoo.http_session import redirect_problem
    from zoo.settings import usable_url

    for current in ("https://a.example/w/m.pth", "http://a.example/w/m.pth"):
        problem = redirect_problem(current, location)
        if problem is None:
            target = urljoin(current, location.strip())
            assert usable_url(target, ("http", "https"))
            assert not (current.startswith("https:") and target.startswith("http:"))  # never a downgrade
        else:
            assert "\n" not in problem and "\r" not in problem and len(problem) < 400


def test_a_hostile_mirror_is_one_line_in_download_and_doctor_and_leaves_the_cache_empty(cache, capsys, monkeypatch):
    from cli_inprocess import rdet_here

    redirect = _answer("Location: ftp://alice:s3cret@ftp.example/x", "Content-Length: 0", status="302 Found")
    with RawServer(redirect) as server:
        env = {"RDET_MIRROR": server.base_url, "RDET_CACHE": str(cache), "RDET_BACKOFF": "0.01"}
        r = rdet_here(capsys, monkeypatch, "download", "r50_fpn_1x", env=env)
        [error] = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # besides plain http's warning
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "redirected to 'ftp://***@ftp.example/x', not a valid http(s) URL" in error
        r = rdet_here(capsys, monkeypatch, "doctor", "--json", env=env)
        [host] = [c for c in json.loads(r.stdout)["checks"] if c["name"] == "weights host"]
        assert r.returncode == 1 and host["status"] == "fail" and "not a valid http(s) URL" in host["detail"]
        assert "s3cret" not in r.stdout + r.stderr and len(server.requests) == 2  # one GET, one HEAD
    assert [p.name for p in cache.iterdir()] == []


def test_a_ca_bundle_setting_naming_no_file_is_one_line_not_a_cache_error(cache, monkeypatch):
    """requests raises a bare OSError for it: fetch blamed the cache ('cannot write ...m.pth'), an image URL
    raised it, and probe's thread died with a traceback ('no answer in 8 s')."""
    from zoo.remote import probe

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cache / "no-such-bundle.pem"))
    words = "no-such-bundle.pem (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE?)"
    with pytest.raises(DownloadError, match=re.escape(words)):
        fetch(f"https://127.0.0.1:{_closed_port()}/m.pth", FULL, cache / "m.pth", **FAST)
    assert words in _image_error("https://127.0.0.1:1/a.jpg") and words in probe("https://127.0.0.1:1/m.pth").detail


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_netrc_that_is_a_pipe_or_device_is_one_line_not_a_hang(kind, cache, monkeypatch, tmp_path):
    """requests reads the .netrc before each request: a FIFO blocked it for ever, /dev/zero never ended."""
    from zoo.remote import probe

    netrc = tmp_path / "netrc"
    if kind == "fifo":
        os.mkfifo(netrc)
    else:
        netrc = Path("/dev/zero")
    monkeypatch.setenv("NETRC", str(netrc))
    words = f"the .netrc file {netrc} (NETRC): not a regular file"
    with pytest.raises(DownloadError, match=re.escape(words)):
        fetch(f"http://127.0.0.1:{_closed_port()}/m.pth", FULL, cache / "m.pth", **FAST)
    assert words in _image_error("http://127.0.0.1:1/a.jpg") and words in probe("http://127.0.0.1:1/m.pth").detail
