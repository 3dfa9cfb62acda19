"""Issue #14, CLI side: findings 7 (recursive globs through symlink loops) and 11 (data shown on a terminal)."""
import os
import time

from cli.globbing import recursive_glob
from cli.text import shown, visible


# ---------------------------------------------------------------------------------------------------- finding 7

def test_7_recursive_glob_through_symlink_loops_ends_and_lists_each_file_once(tmp_path, monkeypatch):
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.jpg", "sub/deep/c.jpg", "sub/x.png", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(".", tmp_path / "loop1")
    os.symlink("..", tmp_path / "sub" / "loop2")
    began = time.monotonic()
    found = recursive_glob(f"{tmp_path}/**/*.jpg")
    assert time.monotonic() - began < 2
    assert found == [f"{tmp_path}/a.jpg", f"{tmp_path}/sub/b.jpg", f"{tmp_path}/sub/deep/c.jpg"]
    monkeypatch.chdir(tmp_path)
    assert recursive_glob("**/*.jpg") == ["a.jpg", "sub/b.jpg", "sub/deep/c.jpg"]
    assert recursive_glob("sub/**/*.png") == ["sub/x.png"] and recursive_glob("*.jpg") == ["a.jpg"]


# ---------------------------------------------------------------------------------------------------- finding 11

def test_11_control_characters_and_markup_in_data_are_shown_not_obeyed():
    title = "cat\x1b]0;pwned\x07"
    assert visible(title) == "cat\\x1b]0;pwned\\x07" and "\x1b" not in shown(title)
    assert visible("a\x9b2Jb\nc") == "a\\x9b2Jb\\x0ac"
    assert shown("[/x] [red]dog[/red]") == "\\[/x] \\[red]dog\\[/red]"
