"""Everything `rdet predict` writes: the one JSON schema, annotated images and videos, per-frame JSON Lines,
YOLO-style label files, crops, and the COCO results file that `rdet eval --results` reads back.

The JSON schema (the same for `--json` on stdout and `--out DIR/predictions.json`):

    {"schema": "rdet-predict/1", "model": NAME, "score_thr": 0.3, "classes": null or [names kept],
     "provenance": {...}, "images": [RECORD, ...]}

(with "interrupted": true when an error or a signal stopped the run before every input was read)

and each RECORD (also one per line in DIR/VIDEO.jsonl, and on stdout with --json for --source streams):

    {"path": input as given (a URL's user:password@ as ***@), "frame": null (a still image) or the frame
     number in a video or stream,
     "width": W, "height": H, "error": null or the one-line reason the input could not be read,
     "detections": [{"bbox": [x1, y1, x2, y2] (pixels, corners), "score": 0-1, "label": 0-based index,
                     "category_id": COCO id, "class": name}, ...]}  (best first)

Scores are fractions (0-1) in every JSON rdet writes, as are AP figures.
"""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import numpy as np

from .common import Fail
from .outputs import held_output_dir, output_dir, writing

SCHEMA = "rdet-predict/1"
PREDICTIONS_FILE = "predictions.json"
COCO_RESULTS_FILE = "coco_results.json"
SAVE_AS = {".jpg", ".jpeg", ".png"}


def shown_input(location: str) -> str:
    """An input fit to print or save: a URL's user:password@ (an image host's, a camera's) becomes ***@."""
    from zoo.settings import redacted

    return redacted(location) if "://" in location else location


def record(result, dets=None) -> dict:
    """A RECORD of the schema for a Detector.predict_frames result (with its kept Detections, or its error)."""
    path = shown_input(result.path)
    if dets is None:  # the engine's error names the input as given
        return {"path": path, "frame": result.frame, "width": None, "height": None,
                "error": result.error and result.error.replace(result.path, path), "detections": []}
    return {"path": path, "frame": result.frame, "width": dets.width, "height": dets.height,
            "error": None, "detections": dets.to_list()}


def keep_classes(dets, labels: Optional[set]):
    """Detections of only the classes in `labels` (all when None)."""
    if labels is None:
        return dets
    import dataclasses

    keep = np.isin(dets.labels, sorted(labels))
    return dataclasses.replace(dets, boxes=dets.boxes[keep], scores=dets.scores[keep], labels=dets.labels[keep])


def parse_classes(text: Optional[str], names: tuple[str, ...]) -> Optional[set]:
    """`--classes person,car` or `--classes 0,2` (0-based labels) -> label indices; Fail for an unknown one."""
    if text is None:
        return None
    wanted, lower = set(), {n.lower(): i for i, n in enumerate(names)}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.isdigit() and int(item) < len(names):
            wanted.add(int(item))
        elif item.lower() in lower:
            wanted.add(lower[item.lower()])
        else:
            import difflib

            close = difflib.get_close_matches(item.lower(), list(lower), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (names or labels 0-{len(names) - 1})"
            raise Fail(f"--classes: unknown class '{item}'{hint}")
    if not wanted:
        raise Fail("--classes names no class")
    return wanted


def check_out_dir(out_dir: Optional[Path], inputs=()) -> None:
    """Before any download or model load: the output directory can be created and written, and holds none of
    the input files (`inputs`: retinanet.data.sources.Input), whose annotated copies would overwrite them."""
    if out_dir is None:
        return
    output_dir(out_dir)
    target = out_dir.resolve()
    for item in inputs:
        if item.kind in ("image", "video") and Path(item.location).parent.resolve() == target:
            raise Fail(f"--out {out_dir} holds the input {item.location}: its annotated copy would overwrite it "
                       "(give another --out)")


class Outputs:
    """Writes one run's results as they arrive, in a with block that closes it, Ctrl-C and SIGTERM included, so
    that videos and JSON Lines are always complete files, then writes the JSON documents (`document` with the
    records as its images). The block holds --out DIR: a second rdet writing there at the same time is refused
    in one line, rather than both overwriting each other's files and documents. A run stopped by an error or a
    signal writes predictions.json with "interrupted": true and no coco_results.json, which `rdet eval
    --results` would score as if the images left out had nothing in them."""

    def __init__(self, out_dir: Optional[Path], document: dict, save_txt: bool = False, save_conf: bool = False,
                 save_crops: bool = False):
        self.out_dir, self.save_txt, self.save_conf, self.save_crops = out_dir, save_txt, save_conf, save_crops
        self.document = document
        self.records: list[dict] = []
        self._names: set[str] = set()
        self._videos: dict[str, tuple] = {}  # source -> (VideoSink, JSON Lines file, stem)
        self._held = ExitStack()

    def __enter__(self) -> "Outputs":
        if self.out_dir is not None:
            self._held.enter_context(held_output_dir(self.out_dir))
        return self

    def __exit__(self, kind, *_) -> bool:
        try:
            self.close(complete=kind is None)
        finally:
            self._held.close()
        return False

    def add(self, result, dets, rec: dict) -> None:
        """A Detector.predict_frames result, its kept Detections (None when it failed) and its RECORD."""
        if self.out_dir is not None and dets is not None:
            with writing(self.out_dir):  # a directory or a dangling link where a file goes: one line, not a traceback
                self._write(result, dets, rec)
        self.records.append(rec)  # after its files: a run stopped meanwhile lists only images whose files are written

    def _write(self, result, dets, rec: dict) -> None:
        if result.frame is None:
            stem = self._unique(Path(_local_name(result.path)).stem)
            self._annotated(result, dets).save(self.out_dir / (stem + _suffix(result.path)))
        else:
            sink, lines, stem = self._video(result)
            sink.write(np.asarray(self._annotated(result, dets))[:, :, ::-1])
            lines.write(json.dumps(rec) + "\n")
            lines.flush()
            stem = f"{stem}_{result.frame}"
        if self.save_txt:
            from retinanet.inference.writers import yolo_lines

            labels = self.out_dir / "labels"
            labels.mkdir(exist_ok=True)
            text = yolo_lines(dets.boxes, dets.scores, dets.labels, dets.width, dets.height, self.save_conf)
            (labels / f"{stem}.txt").write_text("".join(line + "\n" for line in text))
        if self.save_crops:
            from retinanet.inference.writers import save_crops

            save_crops(result.image[:, :, ::-1], dets.boxes, dets.labels, dets.class_names, self.out_dir / "crops",
                       stem)

    def _annotated(self, result, dets):
        from retinanet.inference.visualize import draw_detections

        return draw_detections(result.image.copy(), dets.boxes, dets.scores, dets.labels, dets.class_names)

    def _unique(self, stem: str) -> str:
        name, n = stem or "image", 1
        while name in self._names:
            n += 1
            name = f"{stem}_{n}"
        self._names.add(name)
        return name

    def _video(self, result):
        if result.path not in self._videos:
            from retinanet.inference.writers import VideoSink

            base = "webcam" + result.path if result.path.isdigit() else Path(_local_name(result.path)).stem
            stem = self._unique(base)
            sink = VideoSink(self.out_dir / f"{stem}.mp4", result.fps)
            self._videos[result.path] = (sink, open(self.out_dir / f"{stem}.jsonl", "w"), stem)
        return self._videos[result.path]

    def close(self, complete: bool = True) -> None:
        for sink, lines, _ in self._videos.values():
            sink.close()
            lines.close()
        self._videos.clear()
        if self.out_dir is None:
            return
        from retinanet.atomic_write import write_text_atomically

        document = {**self.document, **({} if complete else {"interrupted": True}), "images": self.records}
        with writing(self.out_dir):
            write_text_atomically(self.out_dir / PREDICTIONS_FILE, json.dumps(document, indent=1))
            if complete:
                write_text_atomically(self.out_dir / COCO_RESULTS_FILE, json.dumps(coco_results(self.records)))
            else:  # an earlier run's would now sit beside this run's images and predictions.json
                (self.out_dir / COCO_RESULTS_FILE).unlink(missing_ok=True)

    @property
    def written(self) -> list[str]:
        return [PREDICTIONS_FILE, COCO_RESULTS_FILE]


def coco_results(records: list[dict]) -> list[dict]:
    """The COCO results format (bbox [x, y, w, h]) of the images that were read, each detection with the image's
    `file_name`: `rdet eval --results FILE --ann A.json` matches them to A.json's images by file name."""
    out = []
    for image_id, rec in enumerate(r for r in records if r["error"] is None):
        name = rec["path"] if rec["frame"] is None else f"{rec['path']}#{rec['frame']}"
        for d in rec["detections"]:
            x1, y1, x2, y2 = d["bbox"]
            out.append({"image_id": image_id, "file_name": name, "category_id": d["category_id"],
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": d["score"]})
    return out


_MAX_URL_NAME = 150  # bytes: a URL's last part may be longer than a file name can be (255), with room for _2.txt


def _local_name(source: str) -> str:
    """A file name for an input: its own for a path, the last part of a URL's path for a URL (shortened)."""
    from urllib.parse import urlparse

    if "://" not in source:
        return Path(source).name
    name = Path(urlparse(source).path).name or "url"
    if len(name.encode()) <= _MAX_URL_NAME:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix) <= 5 else ""
    return name[:-len(suffix) or None].encode()[:_MAX_URL_NAME - 5].decode(errors="ignore") + suffix


def _suffix(source: str) -> str:
    suffix = Path(_local_name(source)).suffix.lower()
    return suffix if suffix in SAVE_AS else ".png"
