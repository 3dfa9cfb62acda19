"""The bundled manifest equals the published table, and bad manifests are rejected with file, entry and field."""

import os

import pytest

from zoo.errors import ManifestError, UnknownModelError
from zoo.manifest import Zoo, bundled_manifest_path, parse_manifest, read_manifest

BASE = "https://download.openmmlab.com/mmdetection/v2.0/retinanet/"
# Backbone | Style | Lr schd | Mem (GB) | Inf time (fps) | box AP | checkpoint file, as published
TABLE = """
R-50-FPN | caffe | 1x | 3.5 | 18.6 | 36.3 | retinanet_r50_caffe_fpn_1x_coco/retinanet_r50_caffe_fpn_1x_coco_20200531-f11027c5.pth
R-50-FPN | pytorch | 1x | 3.8 | 19.0 | 36.5 | retinanet_r50_fpn_1x_coco/retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth
R-50-FPN | pytorch | 2x | - | - | 37.4 | retinanet_r50_fpn_2x_coco/retinanet_r50_fpn_2x_coco_20200131-fdb43119.pth
R-101-FPN | caffe | 1x | 5.5 | 14.7 | 38.5 | retinanet_r101_caffe_fpn_1x_coco/retinanet_r101_caffe_fpn_1x_coco_20200531-b428fa0f.pth
R-101-FPN | pytorch | 1x | 5.7 | 15.0 | 38.5 | retinanet_r101_fpn_1x_coco/retinanet_r101_fpn_1x_coco_20200130-7a93545f.pth
R-101-FPN | pytorch | 2x | - | - | 38.9 | retinanet_r101_fpn_2x_coco/retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth
X-101-32x4d-FPN | pytorch | 1x | 7.0 | 12.1 | 39.9 | retinanet_x101_32x4d_fpn_1x_coco/retinanet_x101_32x4d_fpn_1x_coco_20200130-5c8b7ec4.pth
X-101-32x4d-FPN | pytorch | 2x | - | - | 40.1 | retinanet_x101_32x4d_fpn_2x_coco/retinanet_x101_32x4d_fpn_2x_coco_20200131-237fc5e1.pth
X-101-64x4d-FPN | pytorch | 1x | 10.0 | 8.7 | 41.0 | retinanet_x101_64x4d_fpn_1x_coco/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth
X-101-64x4d-FPN | pytorch | 2x | - | - | 40.8 | retinanet_x101_64x4d_fpn_2x_coco/retinanet_x101_64x4d_fpn_2x_coco_20200131-bca068ab.pth
"""
LOGS = """retinanet_r50_caffe_fpn_1x_coco_20200531_012518 retinanet_r50_fpn_1x_coco_20200130_002941
retinanet_r50_fpn_2x_coco_20200131_114738 retinanet_r101_caffe_fpn_1x_coco_20200531_012536
retinanet_r101_fpn_1x_coco_20200130_003055 retinanet_r101_fpn_2x_coco_20200131_114859
retinanet_x101_32x4d_fpn_1x_coco_20200130_003004 retinanet_x101_32x4d_fpn_2x_coco_20200131_114812
retinanet_x101_64x4d_fpn_1x_coco_20200130_003008 retinanet_x101_64x4d_fpn_2x_coco_20200131_114833""".split()
NAMES = ["r50_caffe_fpn_1x", "r50_fpn_1x", "r50_fpn_2x", "r101_caffe_fpn_1x", "r101_fpn_1x", "r101_fpn_2x",
         "x101_32x4d_fpn_1x", "x101_32x4d_fpn_2x", "x101_64x4d_fpn_1x", "x101_64x4d_fpn_2x"]


def _num(s):
    return None if s == "-" else float(s)


def test_bundled_rows_equal_the_published_table():
    zoo = Zoo.load()
    assert zoo.names() == NAMES
    rows = [r.split(" | ") for r in TABLE.strip().splitlines()]
    for entry, (backbone, style, sched, mem, fps, ap, ckpt), log in zip(zoo, rows, LOGS):
        cfg = ckpt.split("/")[0]
        assert entry.backbone == backbone and entry.style == style and entry.schedule == sched
        assert entry.mem_gb == _num(mem) and entry.fps == _num(fps) and entry.box_ap == _num(ap)
        assert entry.url == BASE + ckpt
        assert entry.sha256 == ckpt[-12:-4]
        assert entry.log_url == f"{BASE}{cfg}/{log}.log.json"
        assert cfg in entry.aliases and zoo.get(cfg) is entry
        assert entry.epochs == (12 if sched == "1x" else 24)
        assert entry.pretrained_url.startswith("https://") and entry.pretrained_sha256


def test_architecture_and_normalisation():
    zoo = Zoo.load()
    x = zoo.get("x101_64x4d_fpn_2x").model_config()
    assert (x.depth, x.groups, x.base_width, x.style, x.to_rgb) == (101, 64, 4, "pytorch", True)
    c = zoo.get("retinanet_r101_caffe_fpn_1x_coco").model_config()
    assert (c.depth, c.groups, c.style, c.to_rgb, c.std) == (101, 1, "caffe", False, (1.0, 1.0, 1.0))
    assert c.mean == (103.530, 116.280, 123.675)
    absent = zoo.get("r50_fpn_2x")
    assert absent.mem_gb is None and absent.fps is None and "mem_gb" in absent.to_dict()


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownModelError, match="r50_fpn_1x"):
        Zoo.load().get("r50_fpn_1")


GOOD = """
[[model]]
name = "mine"
url = "https://example.org/mine-0123abcd.pth"
sha256 = "0123abcd"
depth = 18
style = "pytorch"
num_classes = 3
"""


def test_user_manifest_adds_and_overrides(tmp_path):
    override = GOOD.replace('"mine"', '"r50_fpn_1x"').replace("depth = 18", "depth = 50")
    path = tmp_path / "mine.toml"
    path.write_text(GOOD + override)
    zoo = Zoo.load(path)
    assert zoo.get("mine").num_classes == 3 and zoo.get("mine").source == str(path)
    assert zoo.get("r50_fpn_1x").url.startswith("https://example.org")
    assert len(zoo) == 11


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t.replace('style = "pytorch"', 'style = "tf"'), "field 'style'"),
    (lambda t: t.replace('sha256 = "0123abcd"', 'sha256 = "xyz"'), "field 'sha256'"),
    (lambda t: t.replace("https://", "ftp://"), "field 'url'"),
    (lambda t: t.replace('depth = 18', 'depth = 18\ncolour = "red"'), "unknown field 'colour'"),
    (lambda t: t.replace('depth = 18\n', ''), "missing field 'depth'"),
    (lambda t: t + t, "duplicate name 'mine'"),
    (lambda t: t.replace("[[model]]", "[[model]"), "not valid TOML"),
    (lambda t: t.replace("depth = 18", "depth = 'x'"), "field 'depth'"),
    # #14 finding 6: a URL without a usable file name would put the cache file beside or onto the cache dir
    (lambda t: t.replace("/mine-0123abcd.pth", "/"), "field 'url'"),
    (lambda t: t.replace("/mine-0123abcd.pth", "/w/.."), "field 'url'"),
    (lambda t: t.replace("/mine-0123abcd.pth", "/w/."), "field 'url'"),
    (lambda t: t.replace("/mine-0123abcd.pth", "/w/.hidden"), "field 'url'"),
    (lambda t: t.replace("https://example.org/mine", "https:///mine"), "field 'url'"),
    # #14 finding 12: non-finite numbers, absurd sizes, control characters
    (lambda t: t.replace("depth = 18", "depth = 18\nmean = [nan, 1.0, 2.0]"), "field 'mean'"),
    (lambda t: t.replace("depth = 18", "depth = 18\nstd = [inf, 1.0, 2.0]"), "field 'std'"),
    (lambda t: t.replace("depth = 18", "depth = 18\nfps = nan"), "field 'fps'"),
    (lambda t: t.replace("num_classes = 3", "num_classes = 100000000"), "field 'num_classes'"),
    (lambda t: t.replace("depth = 18", 'depth = 18\nbackbone = "R\\u001b]0;pwned\\u0007"'), "field 'backbone'"),
    (lambda t: t.replace("depth = 18", "depth = 18\nepochs = 1000000000"), "field 'epochs'"),
    # a sweep's finding: 1e300 GFLOPs overflowed `rdet info` / `list --cost` (x 1e9 is infinite)
    (lambda t: t.replace("depth = 18", "depth = 18\ngflops = 1e300\nparams = 5"), "field 'gflops'"),
])
def test_malformed_manifest_names_file_entry_and_field(tmp_path, mutation, message):
    path = tmp_path / "bad.toml"
    path.write_text(mutation(GOOD))
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text
    if "TOML" not in message:
        assert "model 'mine'" in text


def test_deeply_nested_manifest_is_one_line_error(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ManifestError, match="nested too deeply|not valid TOML"):
        read_manifest(path)


def _fifo(d):
    os.mkfifo(d / "zoo.toml")  # was: open() waited for a writer forever
    return d / "zoo.toml"


@pytest.mark.parametrize("make, message", [
    (lambda d: "/dev/zero", "manifest /dev/zero: not a regular file"),
    (lambda d: (d / "big.toml").write_bytes(b"#" * (2 << 20)) and d / "big.toml", "over 1 MiB"),
    (_fifo, "zoo.toml: not a regular file"),
    (lambda d: d / "nope.toml", "nope.toml: no such file"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "bin.toml").write_bytes(b"\xff\xfe\x00") and d / "bin.toml", "not UTF-8"),
])
def test_manifest_that_is_not_a_text_file_is_one_line_error(tmp_path, make, message):
    with pytest.raises(ManifestError, match=message):
        read_manifest(make(tmp_path))


def test_bundled_manifest_is_found():
    assert bundled_manifest_path().name == "zoo.toml"
    assert len(parse_manifest(bundled_manifest_path().read_text())) == 10
