"""Issue #14 and #17 item 9, CLI side, as users run it: findings 1, 2 (what list/info/verify show), 4 (--out
checked before work), 7 (recursive globs through symlink loops), 11 (data shown on a terminal)."""
import hashlib
import json
import os
import time

import cv2
import numpy as np
import pytest

from retinanet.data.globbing import recursive_glob
from cli.text import shown, visible
from tiny_zoo import NAME, run_rdet, write_tiny_zoo


# ---------------------------------------------------------------------------------------------------- finding 7

def test_7_recursive_glob_through_symlink_loops_ends_and_lists_each_file_once(tmp_path, monkeypatch):
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.jpg", "sub/deep/c.jpg", "sub/x.png", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(".", tmp_path / "loop1")
    os.symlink("..", tmp_path / "sub" / "loop2")
    began = time.monotonic()
    found = recursive_glob(f"{tmp_path}/**/*.jpg")
    assert time.monotonic() - began < 2
    assert found == [f"{tmp_path}/a.jpg", f"{tmp_path}/sub/b.jpg", f"{tmp_path}/sub/deep/c.jpg"]
    monkeypatch.chdir(tmp_path)
    assert recursive_glob("**/*.jpg") == ["a.jpg", "sub/b.jpg", "sub/deep/c.jpg"]
    assert recursive_glob("sub/**/*.png") == ["sub/x.png"] and recursive_glob("*.jpg") == ["a.jpg"]


# ---------------------------------------------------------------------------------------------------- finding 11

def test_11_control_characters_and_markup_in_data_are_shown_not_obeyed():
    title = "cat\x1b]0;pwned\x07"
    assert visible(title) == "cat\\x1b]0;pwned\\x07" and "\x1b" not in shown(title)
    assert visible("a\x9b2Jb\nc") == "a\\x9b2Jb\\x0ac"
    assert shown("[/x] [red]dog[/red]") == "\\[/x] \\[red]dog\\[/red]"
    assert visible("\u202eevil\u200b\ufeff") == "\\u202eevil\\u200b\\ufeff"  # reorders or hides text


def test_11_class_names_from_an_annotation_file_are_shown_escaped(tmp_path, capsys, monkeypatch):
    """A sweep's finding: `eval --per-class` printed a category name's ESC and newline raw."""
    from cli_inprocess import rdet_here
    from coco_data import IMAGES, write_annotations

    records = [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in IMAGES]
    evil = "\u202e\x1b[31mevil\n[red]x"
    ann = write_annotations(tmp_path / "evil.json", records, [(42, 12, [1, 1, 20, 20])],
                            categories=((12, evil), (3, "circle")))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 42, "category_id": 12, "bbox": [1, 1, 20, 20], "score": 0.9}]))
    r = rdet_here(capsys, monkeypatch, "eval", "--results", results, "--ann", ann, "--per-class")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\\x1b[31mevil\\x0a[red]x" in r.stdout


# ---------------------------------------------------------------------------------------------------- as users run it


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifest, ckpt = write_tiny_zoo(root)
    return manifest, ckpt


@pytest.fixture
def served(http_server, tiny_files, tmp_path):
    """The tiny model's checkpoint on the test server; (server, checkpoint, env, cache, manifest)."""
    manifest, ckpt = tiny_files
    url = http_server.add(f"/w/{ckpt.name}", ckpt.read_bytes())
    served_manifest = tmp_path / "served.toml"
    served_manifest.write_text(manifest.read_text().replace(ckpt.as_uri(), url))
    env = {"RDET_ZOO": str(served_manifest), "RDET_CACHE": str(tmp_path / "cache"), "RDET_BACKOFF": "0.01"}
    return http_server, ckpt, env, tmp_path / "cache", served_manifest


def _json(r):
    assert "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout)


def test_1_recorded_digest_is_shown_and_can_be_pinned(served, tmp_path):
    server, ckpt, env, cache, manifest = served
    assert "plain http" in run_rdet("download", NAME, "--quiet", env_extra=env).stderr  # warned even when quiet
    full = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    [row] = _json(run_rdet("cache", "verify", "--json", env_extra=env))
    assert row["status"] == "ok" and row["sha256"] == full and row["pinned"] is False
    info = _json(run_rdet("info", NAME, "--json", env_extra=env))
    assert info["recorded_sha256"] == full
    pinned = tmp_path / "pinned.toml"
    pinned.write_text(manifest.read_text().replace(f'sha256 = "{full[:8]}"', f'sha256 = "{full}"'))
    [row] = _json(run_rdet("cache", "verify", "--json", env_extra={**env, "RDET_ZOO": str(pinned)}))
    assert row["status"] == "ok" and row["pinned"] is True


def test_2_list_does_not_count_another_manifests_file_of_the_same_name(served, tmp_path):
    server, ckpt, env, cache, manifest = served
    evil = server.add(f"/evil/{ckpt.name}", b"not the checkpoint")
    other = tmp_path / "other.toml"
    other.write_text(manifest.read_text().replace(server.url(f"/w/{ckpt.name}"), evil).replace(
        f'sha256 = "{ckpt.name[-12:-4]}"', 'sha256 = "' + hashlib.sha256(b"not the checkpoint")
        .hexdigest()[:8] + '"'))
    assert run_rdet("download", NAME, env_extra={**env, "RDET_ZOO": str(other)}).returncode == 0
    [row] = [e for e in _json(run_rdet("list", "--json", env_extra=env)) if e["name"] == NAME]
    assert row["cached"] is False
    [item] = _json(run_rdet("cache", "list", "--json", env_extra=env))
    assert item["state"] == "foreign" and item["verified"] is False


def test_17_9_verify_and_list_agree_and_a_bad_file_is_fetched_again(served):
    server, ckpt, env, cache, _ = served
    assert run_rdet("download", NAME, env_extra=env).returncode == 0
    path = cache / ckpt.name
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]))
    r = run_rdet("cache", "verify", env_extra=env)
    assert r.returncode == 1 and "failed verification" in r.stdout + r.stderr and "verified 1" not in r.stdout
    [item] = _json(run_rdet("cache", "list", "--json", env_extra=env))
    assert item["state"] == "bad" and item["verified"] is False
    [row] = _json(run_rdet("download", NAME, "--json", env_extra=env))
    assert row["status"] == "downloaded" and path.read_bytes() == ckpt.read_bytes()
    assert not list(cache.glob("*.lock"))


def test_11_markup_in_user_input_does_not_crash_the_error_printer(tmp_path):
    r = run_rdet("info", "[/x]", env_extra={"RDET_CACHE": str(tmp_path)})
    assert r.returncode == 2 and "Traceback" not in r.stderr and "MarkupError" not in r.stderr
    assert "[/x]" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["predict --out", "predict skipped", "eval --plots --csv", "doctor"])
def test_11_markup_in_a_path_a_command_reports_is_shown_literally(tiny_files, tmp_path, capsys, monkeypatch,
                                                                  command):
    """A hunt's finding: paths went into rich markup unescaped where a command reports them, so a directory
    named '[/x]' ended a finished run in 'unexpected MarkupError' (exit 70), and '[red]' vanished from it."""
    from cli_inprocess import rdet_here
    from coco_data import write_annotations, write_images

    manifest, _ = tiny_files
    odd = tmp_path / "[" / "x] [red]y"  # '[/x] [red]y' in the path: a closing tag that matches nothing, a style
    image = tmp_path / "small.png"
    cv2.imwrite(str(image), np.full((48, 64, 3), 128, np.uint8))
    quick = ["--model", NAME, "--random-weights", "--device", "cpu", "--size", "64x64"]
    if command == "predict --out":
        args = ["predict", image, *quick, "--out", odd]
    elif command == "predict skipped":
        odd.mkdir(parents=True)
        (odd / "bad.png").write_bytes(b"not an image")
        args = ["predict", odd / "bad.png", *quick]
    elif command == "eval --plots --csv":
        records = write_images(tmp_path / "images")
        ann = write_annotations(tmp_path / "ann.json", records, [(42, 3, [1, 1, 20, 20])])
        results = tmp_path / "results.json"
        results.write_text(json.dumps([{"image_id": 42, "category_id": 3, "bbox": [1, 1, 20, 20], "score": 0.9}]))
        args = ["eval", "--results", results, "--ann", ann, "--plots", odd, "--csv", odd / "c.csv"]
    else:
        args = ["doctor", "--offline", "--data-root", odd]
    r = rdet_here(capsys, monkeypatch, *args, env={"RDET_ZOO": str(manifest), "RDET_CACHE": str(tmp_path / "c")})
    assert r.returncode in (0, 1), r.stderr  # doctor fails the missing data root; predict the unreadable image
    assert "unexpected" not in r.stderr and "[/x] [red]y" in " ".join((r.stdout + r.stderr).split())


def test_11_file_names_reach_the_terminal_escaped(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "x\x1b]0;pwned\x07[bold]y.pth").write_bytes(b"x")
    r = run_rdet("cache", "list", env_extra={"RDET_CACHE": str(cache)})
    assert r.returncode == 0 and "\x1b]0;" not in r.stdout and "\x07" not in r.stdout
    assert "x\\x1b]0;pwned\\x07[bold]y.pth" in r.stdout.replace("\n", "")


@pytest.mark.slow  # a whole prediction: about 10 s on 2 idle cores
def test_11_class_names_from_a_checkpoint_reach_the_terminal_escaped(tiny_files, tmp_path):
    from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint

    manifest, _ = tiny_files
    evil = tmp_path / "evil.pth"
    names = ("[red]dog\x1b]0;pwned\x07[/red]",) * 3  # every class: random weights favour any one of them
    save_reference_checkpoint(evil, reference_state_dict(depth=18, num_classes=3, seed=0), classes=names)
    image = tmp_path / "small.png"
    cv2.imwrite(str(image), np.full((64, 96, 3), 128, np.uint8))
    r = run_rdet("predict", image, "--model", NAME, "--weights", evil, "--score-thr", "0.3",
                 env_extra={"RDET_ZOO": str(manifest), "RDET_CACHE": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr
    assert "\x1b]0;" not in r.stdout and "\x07" not in r.stdout
    assert "[red]dog\\x1b]0;pwned\\x07[/red]" in r.stdout  # shown literally, neither obeyed nor styled


def test_4_predict_out_that_cannot_be_a_directory_fails_before_inference(tiny_files, tmp_path):
    manifest, _ = tiny_files
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_rdet("predict", "--model", NAME, "--random-weights", "--out", blocker,
                 env_extra={"RDET_ZOO": str(manifest), "RDET_CACHE": str(tmp_path / "c")})
    assert r.returncode != 0 and "Traceback" not in r.stderr and str(blocker) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


@pytest.mark.parametrize("problem", ["directory", "parent-is-a-file"])
def test_4_eval_out_that_cannot_be_written_fails_before_inference(tiny_files, tmp_path, problem):
    from coco_data import write_annotations, write_images

    manifest, _ = tiny_files
    records = write_images(tmp_path / "images")
    ann = write_annotations(tmp_path / "ann.json", records, [])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = tmp_path if problem == "directory" else blocker / "dets.json"
    began = time.monotonic()
    r = run_rdet("eval", NAME, "--ann", ann, "--images", tmp_path / "images", "--random-weights", "--out", target,
                 env_extra={"RDET_ZOO": str(manifest), "RDET_CACHE": str(tmp_path / "c")})
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--out" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and time.monotonic() - began < 30  # no inference ran


def test_11_class_names_from_a_checkpoint_are_shown_escaped_in_predicts_lines(capsys):
    """A sweep's finding: a checkpoint's meta CLASSES reached predict's per-image line with its ESC raw."""
    from cli.predict_run import _say

    _say({"detections": [{"class": "\x1b[31mred"}, {"class": "[b]dog"}], "path": "a\u202e.jpg", "frame": None}, 0.01)
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\u202e" not in printed
    assert "a\\u202e.jpg: 1 \\x1b[31mred, 1 [b]dog" in printed
