"""Ground truth and detections placed by hand so that every kind of error occurs once or twice, with the figures
worked out on paper (comments give the working). Categories: circle 3, square 7, triangle 12 (coco_data).

Ground truth (x, y, w, h), 40x40 boxes unless said:
  A circle   image 42   [10, 10]        D circle   image 1000 [5, 5]
  B square   image 42   [60, 10]        E square   image 1000 [50, 40]
  C triangle image 42   [110, 60]       F triangle image 1000 [5, 85]
  G square   image 7    [10, 5] 30x30

Detections, and what each is at IoU 0.5:
  d0 circle   .90 on A exactly                       true positive
  d1 circle   .80 on A moved 4 px (IoU .818)         duplicate (A is taken by d0)
  d2 circle   .70 on B exactly                       classification (B is a square)
  d3 triangle .60 on C moved 20 px (IoU 1/3)         localisation
  d4 square   .95 at [0, 80] 20x20, touching nothing background
  d5 circle   .92 on E moved 20 px down (IoU 1/3)    both (wrong class, poorly placed)
  d6 square   .85 on E exactly                       true positive
  d7 circle   .75 on D exactly                       true positive
  d8 triangle .55 at [60, 100] 20x20, touching nothing background
F and G: nothing points at them, missed. B and C are not missed: d2 and d3 point at them.
"""
from __future__ import annotations

from pathlib import Path

from coco_data import IMAGES, write_annotations

GT = [(42, 3, [10, 10, 40, 40]), (42, 7, [60, 10, 40, 40]), (42, 12, [110, 60, 40, 40]),
      (1000, 3, [5, 5, 40, 40]), (1000, 7, [50, 40, 40, 40]), (1000, 12, [5, 85, 40, 40]), (7, 7, [10, 5, 30, 30])]
DETECTIONS = [
    {"image_id": 42, "category_id": 3, "bbox": [10, 10, 40, 40], "score": 0.90},
    {"image_id": 42, "category_id": 3, "bbox": [14, 10, 40, 40], "score": 0.80},
    {"image_id": 42, "category_id": 3, "bbox": [60, 10, 40, 40], "score": 0.70},
    {"image_id": 42, "category_id": 12, "bbox": [130, 60, 40, 40], "score": 0.60},
    {"image_id": 42, "category_id": 7, "bbox": [0, 80, 20, 20], "score": 0.95},
    {"image_id": 1000, "category_id": 3, "bbox": [50, 60, 40, 40], "score": 0.92},
    {"image_id": 1000, "category_id": 7, "bbox": [50, 40, 40, 40], "score": 0.85},
    {"image_id": 1000, "category_id": 3, "bbox": [5, 5, 40, 40], "score": 0.75},
    {"image_id": 1000, "category_id": 12, "bbox": [60, 100, 20, 20], "score": 0.55},
]

# Per class, the same at every IoU threshold (boxes are exact or well off), as COCOeval's 101-point AP:
#  circle: ranked FP d5, TP d0, FP d1, TP d7, FP d2: precision 0, 1/2, 1/3, 1/2, 2/5 at recall 0, .5, .5, 1, 1;
#          the envelope is 1/2 everywhere: AP 1/2, AR 1
#  square: FP d4, TP d6 over 3 boxes: precision 1/2 up to recall 1/3 (34 of the 101 points): AP 17/101, AR 1/3
#  triangle: two false positives: AP 0, AR 0
PER_CLASS = {"circle": (0.5, 1.0, 2), "square": (17 / 101, 1 / 3, 3), "triangle": (0.0, 0.0, 2)}  # AP, AR100, #GT
AP = (1 / 2 + 17 / 101 + 0) / 3  # = 45/202

# AP50 gained by fixing one kind alone (the mean over 3 classes of the class APs that change):
#  classification: d2 becomes a square on B: square ranks FP d4, TP d6, TP d2 over 3 boxes: precision 2/3 up
#                  to recall 2/3 (67 points): 134/303 instead of 51/303          -> (134 - 51) / 909
#  localisation:   d3 takes C's box: triangle TP d3, FP d8 over 2: 1 up to recall .5: 51/101  -> 51/303
#  both:           d5 removed: circle TP, FP, TP, FP: 1 up to .5 then 2/3: 253/303 instead of 1/2 -> 203/1818
#  duplicate:      d1 removed: circle FP, TP, TP, FP: 2/3 everywhere, instead of 1/2      -> 1/18
#  background:     d4 and d8 removed: square TP d6 over 3: 34/101 instead of 17/101      -> 17/303
#  missed:         F and G leave: square FP d4, TP d6 over 2: 1/2 up to .5: 25.5/101     -> 8.5/303
ERRORS = {"classification": (1, 83 / 909), "localisation": (1, 51 / 303), "both": (1, 203 / 1818),
          "duplicate": (1, 1 / 18), "background": (2, 17 / 303), "missed": (2, 8.5 / 303)}

# At IoU 0.5 and score 0.3, rows ground truth, columns prediction (circle, square, triangle, background):
# d0, d7 on A, D; d6 on E; d2 (circle) takes B in the second pass; G, C, F missed; d1, d5, d4, d3, d8 background
CONFUSION = [[2, 0, 0, 0],
             [1, 1, 0, 1],
             [0, 0, 0, 2],
             [2, 1, 2, 0]]


def write_hand_set(directory: Path) -> Path:
    """The annotation file (its images need not exist: only re-scoring reads it)."""
    records = [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in IMAGES]
    return write_annotations(directory / "hand.json", records, GT)
