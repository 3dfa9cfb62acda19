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
])
def test_a_malformed_field_is_named(change, field):
    with pytest.raises(ManifestError, match=f"field '{field}' must be"):
        parse_manifest(ROW.replace(*change), "m.toml")


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
