"""Which tools this caller may call on this server (ARCHITECTURE.md, step 6).

The first rule that decides, in this order:

1. The server's allow/deny globs: a tool they refuse doesn't exist for anyone (-32602).
2. ``admin`` may call every allowed tool (seed 000: "all tools including admin").
3. Per-tool ``tools.scopes``: a tool a pattern matches needs one of that pattern's scopes from
   every caller, anonymous ones included (issue 19 §1). It is checked before the public
   tools, so the stricter rule wins: a public tool that also has scopes needs the scope.
4. How far the caller's scopes reach (``atrium.auth.roles.reach``): ``tools:write``, or a
   scope the server's ``oauth.scopes`` names, reaches every tool; one of the tool's own
   ``tools.scopes`` reaches that tool; ``tools:read`` the tools annotated ``readOnlyHint``.
   ``user``, ``tools:read`` and ``anonymous`` never lift read-only, and a scope this server
   does not name grants nothing (issue 19 §3).
5. The public tools, which every caller reaches (signing in never takes away what anyone
   may call): those ``tools.public`` matches when it is set; else, where ``oauth.required``
   is false, the tools annotated ``readOnlyHint`` (seed 000: ``anonymous`` is "public tools
   only"; seed 003: "anonymous clients get read-only access"; issue 10 §3), or every tool
   when the operator opts into ``oauth.dev_mode``; else none. So a token whose scopes reach
   no further (only ``anonymous``, only ``user``, unknown ones) gets exactly what a caller
   without a token would: on a sign-in-only server without ``tools.public``, nothing
   (issue 19 §2).

A refused caller without a token is asked to sign in (401); one with a token is told the
scope that would do (403 ``insufficient_scope``): a tool's own scopes, else ``tools:read``
for a read-only tool and ``tools:write`` for any other. ``tools/list`` answers are filtered
by the same verdicts, so a caller sees exactly the tools it may call.

Annotations are learnt from the ``tools/list`` answers that pass through, and a tool called
before any listing is looked up first (``lookup``); a tool still unknown is not read-only
(refusing is the safe way to be wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from atrium.auth.resource_guard import Caller
from atrium.auth.roles import ANONYMOUS, NOT_WRITING, TOOLS_READ, TOOLS_WRITE
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

    def knows(self, server: str, tool: str) -> bool:
        """Whether the server listed ``tool``: a name that came from the backend, not a caller."""
        return tool in self._read_only.get(server, {})

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
        """Every allowed tool is ``ok`` (``verdict``): the fast path relays ``tools/list``
        untouched. Anything less certain filters, which is never wrong, only slower."""
        if not self.policy.open:
            return False
        reach = self.caller.reach(self.config.oauth)
        if reach == "all":
            return True
        if self.config.tools.scopes:
            return False
        return reach == "write" or self._all_public

    def verdict(self, tool: str | None, read_only: bool | None = None) -> Verdict:
        """``ok``, ``hidden``, ``sign-in`` or the scopes needed; the rules in order are the
        module's. ``read_only``: the tool's ``readOnlyHint`` when the caller knows it."""
        if tool is None or not self.policy.permits(tool):
            return "hidden"
        reach = self.caller.reach(self.config.oauth)
        if reach == "all":
            return "ok"
        guards, held = self._guards(tool), self._held
        for scopes in guards:
            if not held & set(scopes):
                return "sign-in" if self.caller.anonymous else scopes
        if reach == "write" or any(held & (set(s) - NOT_WRITING) for s in guards):
            return "ok"
        if read_only is None:
            read_only = self.catalog.read_only(self.server, tool)
        if (reach == "read" and read_only) or self._public(tool, read_only):
            return "ok"
        if self.caller.anonymous:
            return "sign-in"
        return (TOOLS_READ,) if read_only else (TOOLS_WRITE,)

    @property
    def _held(self) -> frozenset[str]:
        # A caller without a token holds what a token of the ``anonymous`` role would: a
        # ``tools.scopes`` entry naming ``anonymous`` means the same for both (issue 19 §2).
        return frozenset({ANONYMOUS}) if self.caller.anonymous else self.caller.scopes

    def _guards(self, tool: str) -> list[tuple[str, ...]]:
        """The ``tools.scopes`` entries that match ``tool``: one scope of each is needed."""
        return [
            tuple(scopes)
            for pattern, scopes in self.config.tools.scopes.items()
            if matches_any((pattern,), tool)
        ]

    def _public(self, tool: str, read_only: bool) -> bool:
        """Whether ``tool`` is one of the public tools (rule 5 of the module)."""
        public, oauth = self.config.tools.public, self.config.oauth
        if public is not None:
            return matches_any(public, tool)
        if oauth.required:
            return False
        return oauth.dev_mode or read_only

    @property
    def _all_public(self) -> bool:
        oauth = self.config.oauth
        return self.config.tools.public is None and not oauth.required and oauth.dev_mode

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
