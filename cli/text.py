"""Data shown on a terminal: names, paths and messages that come from files, checkpoints or the user.

Two dangers, one rule: control characters (an ESC starts a sequence that can retitle the window, move the cursor
or hide text) are shown as visible escapes, and rich markup in the data (`[red]`, `[/x]`) is printed literally
instead of being interpreted (or crashing the printer with a MarkupError).
"""
from __future__ import annotations

import re

from rich.markup import escape

# C0 (newline too: data is one line), DEL and C1; and the invisible format characters that reorder or hide
# text (bidirectional overrides and isolates, zero-width characters, the byte-order mark)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def visible(text: object) -> str:
    """`text` with every control character as a visible escape (`\\x1b`, `\\u202e`), for plain output."""
    return _CONTROL.sub(_escaped, str(text))


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object) -> str:
    """`text` safe to interpolate into rich markup: control characters made visible, markup escaped."""
    return escape(visible(text))
