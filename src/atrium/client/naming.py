"""Tool names a model sees: ``mcp__<server>__<tool>`` (seed 004), and
``mcp__plugin_<plugin>_<server>__<tool>`` for a plugin's servers.

Model APIs accept ``^[a-zA-Z0-9_-]{1,64}$``: any other character becomes ``_``, and a name over
64 characters keeps a readable prefix plus an 8-character hash of the full name, so it is stable
from run to run and two long names that share a prefix still differ. Two tools that come out
with the same name are an error naming both (``NameClash``); nothing is silently overwritten.
``allowed-tools`` lists (exact names and globs, as in a command's frontmatter) filter them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from atrium.errors import EXIT_CONFIG, AtriumError

MAX_LENGTH = 64
VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARACTER = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LENGTH = 8


class NameClash(AtriumError):
    """Two tools map to one name a model would see: a configuration to fix."""

    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class ToolOrigin:
    """Where a namespaced name leads: the server (as configured) and the tool's own name."""

    server: str
    tool: str
    plugin: str | None = None

    def describe(self) -> str:
        where = f"plugin '{self.plugin}', " if self.plugin else ""
        return f"tool '{self.tool}' of {where}server '{self.server}'"


def namespaced(server: str, tool: str, plugin: str | None = None) -> str:
    """The name a model calls ``tool`` of ``server`` by."""
    prefix = f"plugin_{plugin}_{server}" if plugin else server
    return model_safe(f"mcp__{prefix}__{tool}")


def model_safe(name: str) -> str:
    """``name`` within ``^[a-zA-Z0-9_-]{1,64}$``: readable, stable, and distinct when cut."""
    safe = _INVALID_CHARACTER.sub("_", name) or "_"
    if len(safe) <= MAX_LENGTH:
        return safe  # a clash of two replaced names is caught by ``name_table``
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    return f"{safe[: MAX_LENGTH - _HASH_LENGTH - 1]}_{digest}"


def name_table(origins: Iterable[ToolOrigin]) -> dict[str, ToolOrigin]:
    """Each tool by the name a model sees; raises ``NameClash`` naming both sides of a clash."""
    table: dict[str, ToolOrigin] = {}
    for origin in origins:
        name = namespaced(origin.server, origin.tool, origin.plugin)
        first = table.setdefault(name, origin)
        if first is not origin:
            raise NameClash(
                f"{first.describe()} and {origin.describe()} both become '{name}';"
                " rename a server to tell them apart"
            )
    return table


@dataclass(frozen=True)
class AllowedTools:
    """An ``allowed-tools`` list: exact names and globs (``mcp__github__*``); None allows all."""

    patterns: tuple[str, ...] | None = None

    @classmethod
    def of(cls, patterns: Sequence[str] | None) -> AllowedTools:
        return cls(None if patterns is None else tuple(patterns))

    def allows(self, name: str) -> bool:
        if self.patterns is None:
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)
