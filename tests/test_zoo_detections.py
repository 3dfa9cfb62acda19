"""Every zoo row's architecture gives bit-identical detections to the recorded ones (see tests/zoo_detections.py):
restructuring the engine or the CLI must not move a single box, score or label."""
import numpy as np
from zoo_detections import RECORD, architecture_key, zoo_detections

from zoo.manifest import Zoo


def test_every_zoo_row_gives_the_recorded_detections_bit_for_bit(tmp_path):
    expected = dict(np.load(RECORD))
    rows = Zoo.load().names()
    assert len(rows) == 10 and all(f"{architecture_key(Zoo.load().get(n))}/astronaut/boxes" in expected for n in rows)
    got = zoo_detections(tmp_path)
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
        assert np.array_equal(got[key], want), key
    assert min(len(v) for k, v in expected.items() if k.endswith("scores")) > 0
