"""Running an exported file: an onnxruntime session or a loaded ExportedProgram, behind one call.

`open_export(path)` reads the file's metadata and returns a runner whose `run(*tensors)` gives the graph's outputs
as float32/int64 CPU-or-device tensors, whatever the runtime.
"""
from __future__ import annotations

import logging
import os
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch

from retinanet.errors import ExportError, first_line
from retinanet.export.metadata import KEY, ExportInfo, export_format
from retinanet.export.untrusted import CodeInArchive, external_data_tensor, refusing_code
from retinanet.file_check import file_problem


def onnxruntime_reason(err: Exception) -> str:
    """The reason in onnxruntime's first error line, without what precedes it: its status prefix, "Load model
    from PATH failed:", and the C++ source position and signature, which alone can fill 200 characters (e.g. an
    onnxruntime older than the file's IR version said no more than "... onnxruntime::Model::")."""
    text = first_line(err)
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"^Load model from .*? failed:", "", text)
    position = re.match(r"\S+\.(?:cc|cpp|cu|h):\d+ [\w:~<>]+\(", text)
    if position:  # skip the signature's balanced parentheses
        depth, i = 1, position.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        text = text[i:]
    return text.strip() or err.__class__.__name__


class OnnxRunner:
    runtime = "onnxruntime"

    def __init__(self, path: Path, device: torch.device, threads: int | None = None):
        try:
            import onnx  # noqa: F401 - read first, for what onnxruntime would follow (untrusted.py)
            import onnxruntime as ort
        except ImportError:
            raise ExportError(f'{path}: running ONNX files needs onnx and onnxruntime: pip install "rdet[export]"') \
                from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no per-node placement notes on stderr
        # idle worker threads sleep instead of spinning, which would starve PyTorch running beside them
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            tensor = external_data_tensor(path)
        except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and the like: not an ONNX model
            raise ExportError(f"{path}: cannot load it as an ONNX model ({first_line(err)[:200]})") from None
        if tensor is not None:  # its data lies in a file the model names, which could be any file
            raise ExportError(f"{path}: refused: tensor {tensor} keeps its data in another file; rdet's exports "
                              "never do (a foreign or hostile .onnx)")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types, all with a message
            raise ExportError(f"{path}: onnxruntime cannot load it ({onnxruntime_reason(err)[:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if KEY not in meta:
            raise ExportError(f"{path}: an ONNX file without rdet metadata (not written by `rdet export`)")
        self.info = ExportInfo.from_json(meta[KEY], str(path))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.providers = self.session.get_providers()

    @property
    def description(self) -> str:
        return f"onnxruntime ({self.providers[0].replace('ExecutionProvider', '')})"

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {name: t.detach().cpu().contiguous().numpy() for name, t in zip(self.input_names, inputs)}
        return [torch.from_numpy(o) for o in self.session.run(None, feed)]


class ProgramRunner:
    runtime = "torch.export"

    def __init__(self, path: Path, device: torch.device):
        extra = {f"{KEY}.json": ""}
        if not zipfile.is_zipfile(path):  # every .pt2 is a zip archive; torch.export.load would log a traceback
            raise ExportError(f"{path}: not a loadable ExportedProgram (not a .pt2 archive)")
        try:
            # refusing_code: a .pt2 may ask for full unpickling, which would run its code (export/untrusted.py)
            with _quiet_logger("torch.export"), refusing_code():  # torch logs a traceback before raising
                program = torch.export.load(path, extra_files=extra)
        except CodeInArchive as err:
            raise ExportError(f"{path}: refused: {err}; rdet's exports never do (a foreign or hostile .pt2)") \
                from None
        except (RuntimeError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as err:
            first = first_line(err)
            if "warnings above" in first:  # torch's pointer to the log just silenced
                first = "a damaged or foreign .pt2 archive"
            raise ExportError(f"{path}: not a loadable ExportedProgram ({first[:200]})") from None
        if not extra[f"{KEY}.json"]:
            raise ExportError(f"{path}: an ExportedProgram without rdet metadata (not written by `rdet export`)")
        self.info = ExportInfo.from_json(extra[f"{KEY}.json"], str(path))
        self.device = device
        self.module = program.module().to(device)

    @property
    def description(self) -> str:
        return f"torch.export ({self.device.type})"

    @torch.inference_mode()
    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        return list(self.module(*(t.to(self.device) for t in inputs)))


@contextmanager
def _quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def open_export(path: str | os.PathLike, device: torch.device | str = "cpu", threads: int | None = None):
    """A runner for an exported file (by suffix: .onnx or .pt2); ExportError with one line when unusable."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise ExportError(f"{path}: {problem}")
    device = torch.device(device)
    fmt = export_format(path)
    if fmt == "onnx":
        runner = OnnxRunner(path, device, threads)
    elif fmt == "exported-program":
        runner = ProgramRunner(path, device)
    else:
        raise ExportError(f"{path}: not an export (expected a .onnx or .pt2 file)")
    if runner.info.format != fmt:
        raise ExportError(f"{path}: its metadata says {runner.info.format}, its suffix {fmt}")
    return runner
