"""From a ModelConfig and a weights file to detections: the Detector, post-processing, fast paths, drawing."""
