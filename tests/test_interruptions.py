"""Runs that overlap or are stopped never lose or corrupt data: two writers of one file each rename a whole file."""
from retinanet.atomic_write import atomic_path


def test_two_atomic_writes_of_one_file_at_once_each_rename_a_whole_file(tmp_path):
    target = tmp_path / "model.onnx"
    with atomic_path(target) as first:
        first.write_text("first " * 1000)
        with atomic_path(target) as second:  # another process writing the same file meanwhile
            assert second != first and second.name.endswith(".tmp")
            second.write_text("second " * 1000)
        assert target.read_text() == "second " * 1000
    assert target.read_text() == "first " * 1000  # the last rename wins, and it is whole
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
