"""Data shown on a terminal: names, paths and messages that come from files, checkpoints or the user.

Two dangers, one rule: control characters (an ESC starts a sequence that can retitle the window, move the cursor
or hide text) are shown as visible escapes, and rich markup in the data (`[red]`, `[/x]`) is printed literally
instead of being interpreted (or crashing the printer with a MarkupError).
"""
from __future__ import annotations

import re

from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 (newline too: data is one line), DEL and C1


def visible(text: object) -> str:
    """`text` with every control character as a visible escape (`\\x1b`), for plain output."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def shown(text: object) -> str:
    """`text` safe to interpolate into rich markup: control characters made visible, markup escaped."""
    return escape(visible(text))
