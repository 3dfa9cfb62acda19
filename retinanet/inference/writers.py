"""Writing detections out beyond JSON: YOLO-style label lines, cropped boxes, and annotated videos."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def yolo_lines(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, width: int, height: int,
               with_score: bool = False) -> list[str]:
    """One line per box, `class x_center y_center width height [score]`, coordinates normalised to 0-1 by the
    image size (the format YOLO-family tools read); boxes are clipped to the image first."""
    lines = []
    for (x1, y1, x2, y2), score, label in zip(np.asarray(boxes, np.float64), scores, labels):
        x1, x2 = np.clip([x1, x2], 0, width)
        y1, y2 = np.clip([y1, y2], 0, height)
        fields = [str(int(label)), f"{(x1 + x2) / 2 / width:.6f}", f"{(y1 + y2) / 2 / height:.6f}",
                  f"{(x2 - x1) / width:.6f}", f"{(y2 - y1) / height:.6f}"]
        if with_score:
            fields.append(f"{float(score):.6f}")
        lines.append(" ".join(fields))
    return lines


def crop_boxes(image_bgr: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """The pixels inside each box (rounded outwards to whole pixels, clipped to the image); a box with no area
    left after clipping gives an empty array."""
    h, w = image_bgr.shape[:2]
    crops = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64):
        left, top = int(np.clip(np.floor(x1), 0, w)), int(np.clip(np.floor(y1), 0, h))
        right, bottom = int(np.clip(np.ceil(x2), 0, w)), int(np.clip(np.ceil(y2), 0, h))
        crops.append(image_bgr[top:bottom, left:right])
    return crops


def save_crops(image_bgr: np.ndarray, boxes, labels, class_names, directory: str | os.PathLike,
               stem: str) -> list[Path]:
    """Each box as its own image, `directory/CLASS/STEM_K.jpg` (K counts boxes in the image, best first)."""
    import cv2

    written = []
    for k, (crop, label) in enumerate(zip(crop_boxes(image_bgr, boxes), labels)):
        if crop.size == 0:
            continue
        folder = Path(directory) / _safe(class_names[int(label)])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}_{k}.jpg"
        if not cv2.imwrite(str(path), crop):
            raise OSError(f"cannot write {path}")
        written.append(path)
    return written


def _safe(name: str) -> str:
    """A class name usable as a folder name everywhere."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


class VideoSink:
    """An annotated video written frame by frame with OpenCV (mp4v in .mp4, MJPG in .avi); the size is taken from
    the first frame, and `close` (also on exit of a with block) finalises the file, Ctrl-C included."""

    def __init__(self, path: str | os.PathLike, fps: float | None):
        self.path = Path(path)
        self.fps = fps if fps and 0 < fps < 1000 else 25.0
        self._writer = None
        self.frames = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            h, w = frame_bgr.shape[:2]
            codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write a video to {self.path}")
        self._writer.write(np.ascontiguousarray(frame_bgr))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
