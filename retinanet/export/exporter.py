"""Writing a RetinaNet as an ONNX file (onnxruntime and others) or a torch.export ExportedProgram (.pt2).

Both go through torch.export: the graph is captured once, then saved as it is (.pt2) or translated by
torch.onnx's exporter (which needs onnxscript) into ONNX. BatchNorm is folded into the convolutions first: the
same folding the PyTorch inference path does, fewer nodes to trace and run.
"""
from __future__ import annotations

import copy
import os
import warnings
from importlib.util import find_spec
from pathlib import Path

import torch

from retinanet.atomic_write import atomic_path
from retinanet.config import ModelConfig, check_config
from retinanet.data.preprocess import padded_size
from retinanet.errors import ArgumentError, ExportError
from retinanet.export.graphs import (DETECTION_INPUTS, DETECTION_OUTPUTS, NETWORK_OUTPUTS, DetectionGraph,
                                     NetworkGraph)
from retinanet.export.metadata import FORMATS, KEY, PRECISIONS, ExportInfo
from retinanet.inference.fast import fold_batchnorm
from retinanet.values import check_flag, check_path

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
assert tuple(DTYPES) == PRECISIONS
OPSET = 18
MAX_SIDE_32 = 512  # dynamic inputs: up to 16384 pixels a side


def canvas_size(cfg: ModelConfig) -> tuple[int, int]:
    """(H, W) a fixed-size export takes: a landscape image at the test scale, padded (800x1344 for 1333x800)."""
    return padded_size(min(cfg.scale), max(cfg.scale), cfg.size_divisor)


def check_export_precision(precision) -> None:
    """ExportError unless `precision` is one an export is written in (fewer than inference runs in)."""
    if not (isinstance(precision, str) and precision in DTYPES):
        raise ExportError(f"--precision must be one of {', '.join(DTYPES)}, not {precision!r}")


def build_graph(model: torch.nn.Module, cfg: ModelConfig, *, with_postprocess: bool, precision: str = "fp32"):
    """The module to export: a BatchNorm-folded eval copy of `model`, alone or with the post-processing."""
    check_export_precision(precision)
    net = copy.deepcopy(model).float().eval()
    fold_batchnorm(net.backbone)
    net = net.to(DTYPES[precision])
    if not with_postprocess:
        return NetworkGraph(net, DTYPES[precision]).eval()
    return DetectionGraph(net, cfg.num_classes, nms_pre=cfg.nms_pre, nms_iou=cfg.nms_iou,
                          max_per_img=cfg.max_per_img, dtype=DTYPES[precision]).eval()


def example_inputs(cfg: ModelConfig, with_postprocess: bool, size: tuple[int, int] | None = None) -> tuple:
    h, w = size or canvas_size(cfg)
    image = torch.zeros(1, 3, h, w)
    if not with_postprocess:
        return (image,)
    return (image, torch.tensor([h, w], dtype=torch.int64), torch.ones(2), torch.tensor(cfg.score_thr))


def capture(graph: torch.nn.Module, cfg: ModelConfig, *, with_postprocess: bool, dynamic: bool):
    """torch.export of `graph`; with `dynamic`, height and width are any multiples of the size divisor."""
    args = example_inputs(cfg, with_postprocess)
    shapes = None
    if dynamic:
        d = cfg.size_divisor
        h = d * torch.export.Dim("h_blocks", min=2, max=MAX_SIDE_32 * 32 // d)
        w = d * torch.export.Dim("w_blocks", min=2, max=MAX_SIDE_32 * 32 // d)
        shapes = ({2: h, 3: w},) + (None,) * (len(args) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes from torchvision's meta registrations
        return torch.export.export(graph, args, dynamic_shapes=shapes, strict=False)


def export(model: torch.nn.Module, cfg: ModelConfig, out: str | os.PathLike, *, fmt: str, dynamic: bool = False,
           precision: str = "fp32", with_postprocess: bool = False, model_name: str = "",
           weights_sha256: str = "") -> ExportInfo:
    """Write `model` (a RetinaNet with its weights) to `out`; returns the metadata written with it."""
    from retinanet.model.retinanet import RetinaNet

    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "onnx" and any(find_spec(name) is None for name in ("onnx", "onnxscript")):
        # torch.onnx translates through onnxscript; said before the minutes of tracing, not after
        raise ExportError('ONNX export needs onnx, onnxscript and onnxruntime: pip install "rdet[export]"')
    check_export_precision(precision)
    if not isinstance(model, RetinaNet):  # anything else failed minutes into tracing, or deep in deepcopy
        raise ArgumentError(f"model must be a retinanet RetinaNet (a Detector's .model), not {type(model).__name__}")
    check_config(cfg)
    check_path(out, "out")
    check_flag(dynamic, "dynamic")
    check_flag(with_postprocess, "with_postprocess")
    out = Path(out)
    info = ExportInfo.create(cfg, model=model_name, weights_sha256=weights_sha256, format=fmt,
                             input_size=None if dynamic else canvas_size(cfg), with_postprocess=with_postprocess,
                             precision=precision)
    graph = build_graph(model, cfg, with_postprocess=with_postprocess, precision=precision)
    with torch.no_grad():
        program = capture(graph, cfg, with_postprocess=with_postprocess, dynamic=dynamic)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            _save_onnx(program, info, tmp, with_postprocess)
        else:
            with open(tmp, "wb") as f:  # a file object: torch.export.save wants a path to end in .pt2
                torch.export.save(program, f, extra_files={f"{KEY}.json": info.to_json()})
    return info


def _save_onnx(program, info: ExportInfo, path: Path, with_postprocess: bool) -> None:
    names = dict(input_names=list(DETECTION_INPUTS), output_names=list(DETECTION_OUTPUTS)) if with_postprocess \
        else dict(input_names=["image"], output_names=list(NETWORK_OUTPUTS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, dynamo=True, opset_version=OPSET, verbose=False, **names)
    onnx_program.model.metadata_props[KEY] = info.to_json()
    onnx_program.save(str(path))
