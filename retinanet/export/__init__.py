"""Exporting a RetinaNet to ONNX or a torch.export ExportedProgram, running the exported file, and proving that it
detects what the PyTorch model detects.

    graphs.py     what is exported: the network alone, or the network with the reference's post-processing
    metadata.py   what the file says about itself (model, weights digest, classes, preprocessing, version)
    exporter.py   writing the file (torch.onnx.export / torch.export.save)
    runtime.py    running a file: onnxruntime sessions and ExportedPrograms behind one interface
    detector.py   ExportedDetector: the Detector API (predict, detect_prepared) over an exported file
    check.py      the proof: exported vs PyTorch detections on the same inputs, within tolerances
    untrusted.py  opening files that may be hostile (.pt2 without unpickling code, .onnx without external data)
"""
import os

# onnxruntime (1.32 on Linux) uploads usage telemetry to Microsoft about a minute after its first session, through
# any HTTPS proxy set; rdet never sends anything anywhere unasked. The variable must be set before onnxruntime is
# imported (torch.onnx may import it too), hence here; ORT_DISABLE_TELEMETRY=0 keeps onnxruntime's default.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
