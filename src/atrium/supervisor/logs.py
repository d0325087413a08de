"""Reading server logs (``logs/mcp-<name>.log``)."""

from __future__ import annotations

from collections import deque
from pathlib import Path


def log_tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path``; none when it does not exist (yet)."""
    if lines <= 0:
        return []
    try:
        with path.open("r", encoding="utf-8", errors="replace") as stream:
            return [line.rstrip("\n") for line in deque(stream, maxlen=lines)]
    except OSError:
        return []
