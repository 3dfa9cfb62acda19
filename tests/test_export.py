"""Export: every zoo architecture to ONNX and to an ExportedProgram, with and without post-processing in the graph,
detects what the PyTorch model detects; the NMS operator keeps the reference's semantics; bad files are refused."""
import itertools

import numpy as np
import pytest
import torch

import zoo
from coco_data import write_calm_weights
from export_helpers import SCALE, reference_detector
from retinanet import Detector, ModelConfig
from retinanet.assets import SAMPLE_IMAGE
from retinanet.data.images import read_bgr
from retinanet.errors import ExportError
from retinanet.export.check import check_export, generated_images
from retinanet.export.detector import ExportedDetector
from retinanet.export.exporter import export
from retinanet.export.graphs import class_wise_nms_graph
from retinanet.export.metadata import ExportInfo
from retinanet.inference.postprocess import class_wise_nms

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ARCHITECTURES = ["r50_fpn_1x", "r50_caffe_fpn_1x", "r101_fpn_1x", "r101_caffe_fpn_1x", "x101_32x4d_fpn_1x",
                 "x101_64x4d_fpn_1x"]
EXT = {"onnx": "onnx", "exported-program": "pt2"}
# Export is slow on 2 shared cores (R-50 20-45 s, X-101 30-50 s a case under load), so by default two cases cover
# both backbone families and both styles: ResNet-50 caffe style to ONNX with the post-processing in the graph,
# and ResNeXt-101 32x4d (pytorch style) as an ExportedProgram network. An ONNX network alone is exported by
# test_export_cli.py and an ExportedProgram with post-processing by the fp16 test below; the other 22 cases
# (R-50 pytorch style, R-101 both styles, X-101-64x4d, every format and graph kind) run under -m slow.
DEFAULT = {("r50_caffe_fpn_1x", "onnx", True), ("x101_32x4d_fpn_1x", "exported-program", False)}
CASES = [pytest.param(*case, id="-".join([case[0], case[1], "postprocess" if case[2] else "network"]),
                      marks=() if case in DEFAULT else pytest.mark.slow)
         for case in itertools.product(ARCHITECTURES, EXT, (False, True))]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.mark.parametrize("name,fmt,with_postprocess", CASES)
def test_every_architecture_exports_and_detects_the_same(workdir, name, fmt, with_postprocess):
    entry = zoo.get(name)
    reference = reference_detector(entry, workdir)
    out = workdir / f"{name}-{int(with_postprocess)}.{EXT[fmt]}"
    export(reference.model, reference.cfg, out, fmt=fmt, with_postprocess=with_postprocess, model_name=name)
    exported = ExportedDetector(out, device="cpu")
    assert exported.info.model == name and exported.info.with_postprocess == with_postprocess
    assert exported.info.input_size == (256, 320)
    report = check_export(exported, reference, [("bundled photo", read_bgr(SAMPLE_IMAGE))])
    row = report.rows[0]
    assert row.torch_detections == row.export_detections > 0
    assert report.passed, report.to_dict()
    assert row.max_box_diff <= 0.01 and row.max_score_diff <= 1e-4 and row.labels_agree


@pytest.mark.slow  # 20-60 s each; the CLI tests export a dynamic network-only ONNX file by default
@pytest.mark.parametrize("fmt", list(EXT))
@pytest.mark.parametrize("with_postprocess", [False, True])
def test_dynamic_export_takes_any_shape_and_matches(workdir, fmt, with_postprocess):
    """A dynamic export on portrait and landscape sizes, padded per image like PyTorch."""
    reference = Detector(
        ModelConfig(depth=18, num_classes=3, scale=SCALE, class_names=("circle", "square", "triangle")),
        write_calm_weights(workdir / "d18.pth"), device="cpu", fast=False)
    out = workdir / f"d18-dynamic-{int(with_postprocess)}.{EXT[fmt]}"
    export(reference.model, reference.cfg, out, fmt=fmt, dynamic=True, with_postprocess=with_postprocess)
    exported = ExportedDetector(out, device="cpu")
    assert exported.info.input_size is None
    report = check_export(exported, reference, generated_images(portrait=True))
    assert report.passed, report.to_dict()
    assert {r.image for r in report.rows} >= {"generated 427x640", "generated 640x427"}
    # the same through predict: per-image padding, exactly what the PyTorch detector does
    img = generated_images(portrait=True)[2][1][:, :, ::-1].copy()  # BGR -> RGB for predict
    ref, got = reference.predict(img)[0], exported.predict(img)[0]
    assert len(ref) == len(got) > 0
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.01)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-4)


def _nms_export(tmp_path):
    class NMS(torch.nn.Module):
        def forward(self, boxes, scores, labels):
            return class_wise_nms_graph(boxes, scores, labels, 0.5)

    dyn = torch.export.Dim.DYNAMIC
    args = (torch.rand(8, 4), torch.rand(8), torch.zeros(8, dtype=torch.int64))
    program = torch.export.export(NMS(), args, dynamic_shapes=({0: dyn}, {0: dyn}, {0: dyn}))
    path = tmp_path / "nms.onnx"
    torch.onnx.export(program, dynamo=True, verbose=False).save(str(path))
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda b, s, lab: session.run(None, {"boxes": b.numpy(), "scores": s.numpy(), "labels": lab.numpy()})[0]


def test_onnx_nms_keeps_the_reference_semantics(tmp_path):
    """onnxruntime's NonMaxSuppression against torchvision's nms (the reference's): strict IoU > 0.5 with no +1,
    equal scores kept in index order, boxes of other classes never suppressed, and random boxes in bulk."""
    onnx_nms = _nms_export(tmp_path)
    cases = [
        # IoU exactly 0.5 (50 / 100): not suppressed; with +1 pixel areas it would be 66/121 and suppressed
        ([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8], [0, 0]),
        # IoU 0.51: suppressed
        ([[0, 0, 10, 10], [0, 0, 10, 5.1]], [0.9, 0.8], [0, 0]),
        # equal scores: the earlier box wins, in either position
        ([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [51, 50, 61, 60]], [0.7, 0.7, 0.7, 0.7], [0, 0, 0, 0]),
        # the same boxes in different classes are all kept
        ([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [0, 1, 2]),
    ]
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 100
    cases.append(((torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 40], 1)).tolist(),
                  torch.rand(300, generator=g).tolist(), torch.randint(0, 3, (300,), generator=g).tolist()))
    for boxes, scores, labels in cases:
        b, s, lab = torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels)
        expected = class_wise_nms(b, s, lab, 0.5)
        assert onnx_nms(b, s, lab).tolist() == expected.tolist()
    assert class_wise_nms(*(torch.tensor(c) for c in ([[0, 0, 10, 10.], [0, 0, 10, 5.]], [.9, .8], [0, 0])),
                          0.5).tolist() == [0, 1]


def _info(**changes):
    cfg = ModelConfig(depth=101, groups=32, base_width=4)
    info = ExportInfo.create(cfg, model="x101_32x4d_fpn_1x", weights_sha256="ab" * 32, format="onnx",
                             input_size=(800, 1344), with_postprocess=False, precision="fp32")
    return info.__class__(**{**info.__dict__, **changes})


def test_metadata_round_trip_and_mismatch_messages():
    info = _info()
    again = ExportInfo.from_json(info.to_json(), "m.onnx")
    assert again == info and again.model_config().groups == 32
    assert info.mismatch(zoo.get("x101_32x4d_fpn_2x").model_config()) is None
    why = info.mismatch(zoo.get("r50_fpn_1x").model_config(), "r50_fpn_1x")
    assert "x101_32x4d_fpn_1x" in why and "r50_fpn_1x" in why and "depth" in why and "\n" not in why
    caffe = info.mismatch(zoo.get("r101_caffe_fpn_1x").model_config())
    assert "groups" in caffe


@pytest.mark.parametrize("text", ["", "{", "[]", '{"schema": 99}', '{"schema": 1}'])
def test_bad_metadata_is_one_line(text):
    with pytest.raises(ExportError) as e:
        ExportInfo.from_json(text, "m.onnx")
    assert "m.onnx" in str(e.value) and "\n" not in str(e.value)


def test_broken_and_foreign_files_are_refused_with_one_line(tmp_path):
    import onnx
    from onnx import helper, TensorProto

    plain = tmp_path / "plain.onnx"  # a valid ONNX model that rdet did not write
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    # IR 8 and opset 17: every onnxruntime the export extra admits (>= 1.20) loads it
    onnx.save(helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), plain)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not really onnx" * 10)
    pt2 = tmp_path / "garbage.pt2"
    pt2.write_bytes(b"PK\x03\x04 truncated zip")
    for path, words in [(plain, "without rdet metadata"), (garbage, "cannot load"), (pt2, "not a loadable"),
                        (tmp_path / "missing.onnx", "no such file"), (SAMPLE_IMAGE, "not an export")]:
        with pytest.raises(ExportError) as e:
            ExportedDetector(path, device="cpu")
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_onnxruntimes_reason_is_kept_and_its_source_position_dropped():
    from retinanet.export.runtime import onnxruntime_reason

    said = ("[ONNXRuntimeError] : 1 : FAIL : Load model from /tmp/a/plain.onnx failed:/onnxruntime_src/onnxruntime/"
            "core/graph/model.cc:180 onnxruntime::Model::Model(onnx::ModelProto&&, const onnxruntime::PathString&, "
            "const onnxruntime::IOnnxRuntimeOpSchemaRegistryList*, const onnxruntime::logging::Logger&, const "
            "onnxruntime::ModelOptions&) Unsupported model IR version: 14, max supported IR version: 10\n")
    assert onnxruntime_reason(RuntimeError(said)) == "Unsupported model IR version: 14, max supported IR version: 10"
    plain = "[ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an invalid model. Error: two nodes named a"
    assert onnxruntime_reason(RuntimeError(plain)) == "This is an invalid model. Error: two nodes named a"
    assert onnxruntime_reason(RuntimeError("")) == "RuntimeError"


def test_export_options_are_checked_before_any_work(tmp_path):
    reference = ModelConfig(depth=18, num_classes=3)
    with pytest.raises(ExportError, match="--format must be one of onnx, exported-program"):
        export(torch.nn.Identity(), reference, tmp_path / "m.tflite", fmt="tflite")
    with pytest.raises(ExportError, match="--precision must be one of fp32, fp16"):
        export(torch.nn.Identity(), reference, tmp_path / "m.onnx", fmt="onnx", precision="int8")


def test_half_precision_export_is_checked_by_matching(workdir):
    reference = Detector(
        ModelConfig(depth=18, num_classes=3, scale=SCALE), write_calm_weights(workdir / "h18.pth"), device="cpu",
        fast=False)
    out = workdir / "h18.pt2"
    export(reference.model, reference.cfg, out, fmt="exported-program", precision="fp16", with_postprocess=True)
    exported = ExportedDetector(out, device="cpu")
    assert exported.info.precision == "fp16"
    report = check_export(exported, reference, [("bundled photo", read_bgr(SAMPLE_IMAGE))])
    assert report.passed and report.box_tol == 2.0, report.to_dict()
    row = report.rows[0]
    assert row.torch_detections > 0 and 0 < row.max_score_diff <= 1e-2  # half rounding shows, within bounds


@pytest.mark.parametrize("change, words", [
    ({"score_thr": float("nan")}, "score_thr must be a number from 0 to 1"),
    ({"nms_iou": 5}, "nms_iou must be a number from 0 to 1"),
    ({"scale": [0, 0]}, "scale must be two positive integers"),
    ({"max_per_img": 0}, "max_per_img must be a positive integer"),
    ({"std": [0, 1, 1]}, "mean and std must be 3 finite numbers"),
])
def test_metadata_values_that_would_run_but_detect_nothing_are_refused(change, words):
    """A sweep's finding: an edited rdet.json with NaN or out-of-range values was accepted silently."""
    info = _info()
    text = info.__class__(**{**info.__dict__, "config": {**info.config, **change}}).to_json()
    with pytest.raises(ExportError, match=f"m.pt2: unreadable rdet export metadata \\({words}"):
        ExportInfo.from_json(text, "m.pt2")
