"""The copy into a staging buffer (inference.staging.copy_into) gives the array's values for every layout an
image can come in; the pinned buffers themselves need CUDA (tests/test_gpu.py)."""
import numpy as np
import pytest
import torch

from retinanet.inference.staging import copy_into


def layouts():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    read_only = base.copy()
    read_only.flags.writeable = False
    wide = rng.integers(0, 256, (40, 120, 3), dtype=np.uint8)
    return {"contiguous": base, "channel flip": base[:, :, ::-1], "row flip": base[::-1], "every other column":
            wide[:, ::2], "Fortran order": np.asfortranarray(base), "read-only": read_only}


@pytest.mark.parametrize("name", list(layouts()))
def test_copy_into_gives_the_values_of_any_layout(name):
    array = layouts()[name]
    host = torch.full(array.shape, 7, dtype=torch.uint8)
    copy_into(host, array)
    assert host.is_contiguous() and np.array_equal(host.numpy(), array)
