"""Tool-name globs used by ``tools.allowed``/``denied``/``public`` and per-tool scopes.

MCP tool names are 1-128 characters of ``A-Z a-z 0-9 _ - .`` (spec, "Tool names"), so a glob is
that alphabet plus ``*``, ``?`` and ``[...]`` classes (``[!...]`` negates). Anything else could
never match a tool and is almost certainly a typo, so it is refused at load time.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from functools import lru_cache

_LITERAL = re.compile(r"[A-Za-z0-9_.\-]")


def validate_glob(pattern: str) -> None:
    """Raise ``ValueError`` saying what is wrong with ``pattern``."""
    if not pattern:
        raise ValueError("an empty glob matches no tool")
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "[":
            close = pattern.find(
                "]", index + 2 if pattern[index + 1 : index + 2] == "!" else index + 1
            )
            if close == -1:
                raise ValueError(
                    f"invalid glob {pattern!r}: '[' at position {index} is never closed"
                )
            body = pattern[index + 1 : close].lstrip("!")
            if not body:
                raise ValueError(f"invalid glob {pattern!r}: empty character class")
            index = close + 1
            continue
        if char == "]":
            raise ValueError(f"invalid glob {pattern!r}: ']' at position {index} without '['")
        if char not in "*?" and not _LITERAL.match(char):
            raise ValueError(
                f"invalid glob {pattern!r}: {char!r} cannot occur in a tool name"
                " (letters, digits, '_', '-', '.'; wildcards '*', '?', '[...]')"
            )
        index += 1


@lru_cache(maxsize=4096)
def matches(pattern: str, name: str) -> bool:
    return fnmatchcase(name, pattern)


def matches_any(patterns: tuple[str, ...], name: str) -> bool:
    return any(matches(pattern, name) for pattern in patterns)
