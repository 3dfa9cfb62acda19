"""Every zoo row's architecture gives the recorded detections (see tests/zoo_detections.py): restructuring the
engine or the CLI must not move a single box, score or label. Bit for bit on a CPU of the recording's kind; on
another instruction set oneDNN's float sums end differently in the last bits, so there the boxes must agree to
1e-3 px and the scores to 1e-5, with the same labels."""
import numpy as np
from zoo_detections import RECORD, architecture_key, cpu_signature, zoo_detections

from zoo.manifest import Zoo


def test_every_zoo_row_gives_the_recorded_detections(tmp_path):
    expected = dict(np.load(RECORD))
    same_cpu = str(expected.pop("cpu")) == cpu_signature()
    rows = Zoo.load().names()
    assert len(rows) == 10 and all(f"{architecture_key(Zoo.load().get(n))}/astronaut/boxes" in expected for n in rows)
    got = zoo_detections(tmp_path)
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
        if same_cpu or key.endswith("labels"):
            assert np.array_equal(got[key], want), key
        else:
            np.testing.assert_allclose(got[key], want, atol=1e-3 if key.endswith("boxes") else 1e-5, err_msg=key)
    assert min(len(v) for k, v in expected.items() if k.endswith("scores")) >= 50
