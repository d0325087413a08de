"""Which tools this caller may call on this server (ARCHITECTURE.md, step 6).

The server's allow/deny globs come first (a tool they refuse doesn't exist for anyone: -32602).
Then the caller: anonymous callers see the tools the YAML marks ``public``; ``admin`` sees
every allowed tool; per-tool ``scopes`` in the YAML need one of their scopes; a caller whose
only say here is ``tools:read`` may call tools annotated ``readOnlyHint``. ``tools/list`` is
filtered by the same verdicts, so a caller sees exactly what it may call.

Annotations are learnt from the ``tools/list`` answers that pass through; a tool not seen yet
is not read-only (refusing is the safe way to be wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from atrium.auth.resource import Caller
from atrium.auth.roles import TOOLS_WRITE
from atrium.gateway.policy import Policy
from atrium.registry.globs import matches_any
from atrium.registry.schema import ServerConfig

Verdict = Literal["ok", "hidden", "sign-in"] | tuple[str, ...]  # a tuple: the scopes needed


@dataclass
class ToolCatalog:
    """``readOnlyHint`` of each tool seen, per server."""

    _read_only: dict[str, dict[str, bool]] = field(default_factory=dict)

    def learn(self, server: str, tools: list[Any]) -> None:
        known = self._read_only.setdefault(server, {})
        for tool in tools:
            if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                known[tool["name"]] = read_only_hint(tool)

    def read_only(self, server: str, tool: str) -> bool:
        return self._read_only.get(server, {}).get(tool, False)

    def forget(self) -> None:
        self._read_only.clear()


def read_only_hint(tool: dict[str, Any]) -> bool:
    """Whether a ``tools/list`` entry is annotated ``readOnlyHint: true``."""
    annotations = tool.get("annotations")
    return isinstance(annotations, dict) and annotations.get("readOnlyHint") is True


@dataclass
class ToolAccess:
    server: str
    config: ServerConfig
    policy: Policy
    caller: Caller
    catalog: ToolCatalog

    @property
    def open(self) -> bool:
        """Nothing to filter: the fast path relays ``tools/list`` untouched."""
        return (
            self.policy.open
            and (not self.caller.anonymous or self.config.tools.public is None)
            and not self.config.tools.scopes
            and not self.caller.read_only(self.config.oauth)
        )

    def verdict(self, tool: str | None, read_only: bool | None = None) -> Verdict:
        if tool is None or not self.policy.permits(tool):
            return "hidden"
        if self._public(tool):
            return "ok"  # signing in never takes away what anyone may call
        if self.caller.anonymous:
            return "sign-in"
        if self.caller.admin:
            return "ok"
        for pattern, scopes in self.config.tools.scopes.items():
            if matches_any((pattern,), tool) and not self.caller.scopes & set(scopes):
                return tuple(scopes)
        if self.caller.read_only(self.config.oauth):
            if read_only is None:
                read_only = self.catalog.read_only(self.server, tool)
            if not read_only:
                return (TOOLS_WRITE,)
        return "ok"

    def _public(self, tool: str) -> bool:
        if self.config.oauth.required:
            return False
        public = self.config.tools.public
        return public is None or matches_any(public, tool)

    def filter_result(self, message: dict[str, Any]) -> bool:
        """Drop the tools this caller may not call from a ``tools/list`` result; whether it did."""
        result = message.get("result")
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            return False
        self.catalog.learn(self.server, tools)
        kept = [
            tool
            for tool in tools
            if isinstance(tool, dict)
            and self.verdict(str(tool.get("name")), read_only_hint(tool)) == "ok"
        ]
        if len(kept) == len(tools):
            return False
        assert isinstance(result, dict)
        result["tools"] = kept
        if "cacheScope" in result:
            # A narrowed list is this caller's view (2026-07-28, caching: "private").
            result["cacheScope"] = "private"
        return True
