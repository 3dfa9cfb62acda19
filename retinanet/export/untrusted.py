"""Opening exported files that may be hostile: a .pt2 without running code from it, an .onnx without reading other
files.

torch.export.load unpickles with weights_only=False wherever the archive asks it to: a weight or constant marked
`use_pickle`, a custom or opaque object constant, and as a fallback for any artifact that the weights-only
unpickler refuses. A pickle can call any Python function, so a hostile .pt2 given as --weights would run its own
code (shown with a file that runs a shell command). rdet's exports need none of these: their weights and constants
are plain tensors. Within `refusing_code()` every such call raises CodeInArchive instead, and torch.load keeps
weights_only=True whatever the caller (or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) asks.

An ONNX tensor may keep its data in another file, named by a path inside the model; recent onnxruntime releases
refuse paths that leave the model's directory, older ones read any file. rdet's exports keep every tensor inside
the .onnx (they are far below protobuf's 2 GB limit), so a file with external data is refused before onnxruntime
sees it, whatever its version.
"""
from __future__ import annotations

import pickle
import types
from contextlib import contextmanager

import torch


class CodeInArchive(Exception):
    """The archive asked for a full unpickling, which could run code from it."""


def _refuse(*args, **kwargs):
    raise CodeInArchive("it asks for objects that only a full unpickling (which can run code) would make")


@contextmanager
def refusing_code():
    """torch.export.load with every code-running deserialisation refused (CodeInArchive). Patches torch.load,
    torch._C._pickle_load_obj and the pt2 loader's pickle module for the duration: call it from one thread."""
    from torch.export.pt2_archive import _package

    real_load, real_pickle_load_obj, real_pickle = torch.load, torch._C._pickle_load_obj, _package.pickle

    def weights_only_load(f, *args, weights_only=None, **kwargs):
        if weights_only is False:
            _refuse()
        return real_load(f, *args, weights_only=True, **kwargs)

    guarded = types.ModuleType("pickle")
    guarded.__dict__.update(vars(pickle))
    guarded.loads = guarded.load = _refuse
    torch.load, torch._C._pickle_load_obj, _package.pickle = weights_only_load, _refuse, guarded
    try:
        yield
    finally:
        torch.load, torch._C._pickle_load_obj, _package.pickle = real_load, real_pickle_load_obj, real_pickle


def external_data_tensor(path) -> str | None:
    """The name of a tensor whose data the ONNX file at `path` keeps in another file, or None: initializers, sparse
    initializers and attribute tensors, in subgraphs too."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        tensors = [*graph.initializer, *(t for s in graph.sparse_initializer for t in (s.values, s.indices))]
        for node in graph.node:
            for attr in node.attribute:
                tensors += [attr.t, *attr.tensors,
                            *(t for s in [attr.sparse_tensor, *attr.sparse_tensors] for t in (s.values, s.indices))]
                graphs += [attr.g, *attr.graphs]
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
                return tensor.name or "(unnamed)"
    return None
