"""COCO box AP: detections over a CocoSet, scored by COCOeval."""
