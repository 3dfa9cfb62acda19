"""pycocotools' COCO and COCOeval, or one line saying why they cannot be imported.

An installed pycocotools can fail at import time with something other than ImportError: wheels before 2.0.8
were built for numpy 1 and raise "ValueError: numpy.dtype size changed" under numpy 2. rdet asks for >= 2.0.8,
but an older one already installed elsewhere on the path (or pinned by another package) still turns up.
"""
from __future__ import annotations

from retinanet.errors import RetinaNetError, described


def pycocotools_classes() -> tuple:
    """(COCO, COCOeval) from pycocotools; RetinaNetError (one line) where the import fails in any way."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except Exception as err:  # noqa: BLE001 - ImportError, or a binary built against another numpy
        raise RetinaNetError(f"cannot import pycocotools ({described(err)}); pip install -U 'pycocotools>=2.0.8'") \
            from None
    return COCO, COCOeval
