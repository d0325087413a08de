"""Text from outside (audit records, client names, what servers answer), made safe to print.

A terminal acts on some characters instead of showing them: ESC starts a sequence that can
clear the screen, move the cursor or retitle the window (ECMA-48), as do the C1 controls
(U+0080-U+009F, CSI among them); CR returns to the line's start, over what was printed. So a
tool name or a client name with such characters could rewrite what an operator reads, or
forge lines of a table. Bidirectional controls reorder what follows them (Unicode TR #9), the
line and paragraph separators break lines in some terminals. Each of these is shown escaped,
as Python writes it (``\\x1b``, ``\\u202e``), so the text stays readable and nothing acts.

JSON output needs none of this: ``json.dumps`` escapes every control and non-ASCII character.
"""

from __future__ import annotations

import re

# C0 but tab and newline, DEL, C1; the bidi marks, embeddings, overrides and isolates; U+2028,
# U+2029.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_IN_TEXT = re.compile(f"[{_CONTROLS}]")
_IN_LINE = re.compile(f"[\t\n{_CONTROLS}]")


def safe_text(text: str, *, multiline: bool = False) -> str:
    """``text`` with every character that acts on a terminal escaped; tabs and newlines too,
    unless ``multiline`` (text printed as a block of its own, never a cell or a line)."""
    pattern = _IN_TEXT if multiline else _IN_LINE
    return pattern.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    return repr(match[0])[1:-1]
