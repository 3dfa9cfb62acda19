"""What every DataLoader worker of rdet's sets first, training's and evaluation's alike."""
from __future__ import annotations


def init_worker(_worker_id: int) -> None:
    """Stop signals (Ctrl-C, SIGTERM, SIGHUP, often sent to the whole process group) are the main process's to
    handle: it finishes the step and saves, or stops, then ends its workers. OpenCV's own thread pool in each of
    many workers would oversubscribe the cores."""
    import cv2

    from retinanet.stop_signals import leave_stopping_to_the_main_process

    leave_stopping_to_the_main_process()
    cv2.setNumThreads(1)
