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

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

import orjson

from atrium.auth.resource_guard import Caller
from atrium.auth.roles import ANONYMOUS, NOT_WRITING, TOOLS_READ, TOOLS_WRITE, Reach
from atrium.gateway.jsonrpc import Call
from atrium.gateway.policy import Policy
from atrium.registry.globs import matches_any
from atrium.registry.schema import ServerConfig

Verdict = Literal["ok", "hidden", "sign-in"] | tuple[str, ...]  # a tuple: the scopes needed
MAX_HEADER_TOOLS = 1000
# Listings kept parsed (``ToolCatalog.listing``): a server's last one, for so many servers,
# each with so many callers' views of it written out; only listings of ``LISTING_MIN_BYTES``
# or more, which cost more to parse than to compare, and of ``LISTING_MAX_BYTES`` at most: a
# listing kept costs up to ~12 times its bytes (~6.5 parsed, the views), so all of them stay
# under ~50 MiB whatever the backends answer (a 100-tool listing: ~43 KB, ~0.5 MB kept).
MAX_LISTINGS = 16
MAX_VIEWS = 4
LISTING_MIN_BYTES = 4096
LISTING_MAX_BYTES = 256 * 1024
X_MCP_HEADER = "x-mcp-header"  # the SDK's X_MCP_HEADER_KEY (header_codec says why not imported)
_MARK = X_MCP_HEADER.encode()
_NONE: Mapping[str, dict[str, Any]] = MappingProxyType({})


@dataclass(frozen=True)
class Learnt:
    """What ``ToolCatalog.learn`` learnt of a listing, by tool name: its read-only hint, and
    its header declarations (``None`` for a tool without; all ``None`` for a listing without
    a single mark, the common case)."""

    hints: dict[str, bool]
    declared: dict[str, dict[str, Any] | None] | None


@dataclass(eq=False)
class Listing:
    """A ``tools/list`` result as a backend wrote it (``raw``, the bytes of the JSON-RPC
    ``result``) and as parsed once. Nothing here is changed after it is made: a caller's view
    is a new list of the same entries, written out once per set of entries kept (``views``)."""

    raw: bytes
    result: dict[str, Any]
    tools: list[Any]
    learnt: Learnt
    views: dict[tuple[int, ...], bytes] = field(default_factory=dict)


@dataclass
class ToolCatalog:
    """What the gateway learnt of each server's tools from their listings: ``readOnlyHint``,
    and the ``x-mcp-header`` declarations of the tools that have any (SEP-2243), kept as a
    schema of just the declared arguments (at most ``MAX_HEADER_TOOLS`` tools a server);
    and the last listing of the ``MAX_LISTINGS`` servers listed last, parsed (``listing``)."""

    _read_only: dict[str, dict[str, bool]] = field(default_factory=dict)
    _headers: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _listings: OrderedDict[str, Listing] = field(default_factory=OrderedDict)

    def learn(self, server: str, tools: list[Any]) -> Learnt:
        """Learn a listing's tools; what was learnt, to be told again (``listing``)."""
        # One pass of C over all the input schemas decides the common case, a listing without
        # any mark: a tool is then read only for its read-only hint (issue 17).
        schemas = [tool.get("inputSchema") for tool in tools if isinstance(tool, dict)]
        declared: dict[str, dict[str, Any] | None] | None = (
            {} if _MARK in orjson.dumps(schemas) else None
        )
        hints = {}
        for tool in tools:
            # ``read_only_hint``, inlined: a listing of 100 tools pays for 100 calls otherwise.
            if isinstance(tool, dict) and isinstance(name := tool.get("name"), str):
                annotations = tool.get("annotations")
                hints[name] = (
                    isinstance(annotations, dict) and annotations.get("readOnlyHint") is True
                )
                if declared is not None:
                    declared[name] = header_schema(tool.get("inputSchema"))
        learnt = Learnt(hints, declared)
        self._tell(server, learnt)
        return learnt

    def _tell(self, server: str, learnt: Learnt) -> None:
        self._read_only.setdefault(server, {}).update(learnt.hints)
        headers = self._headers.setdefault(server, {})
        if learnt.declared is None:
            if headers:
                for name in learnt.hints:
                    headers.pop(name, None)
            return
        for name, declared in learnt.declared.items():
            if declared is None:
                headers.pop(name, None)
            elif name in headers or len(headers) < MAX_HEADER_TOOLS:
                headers[name] = declared

    def listing(self, server: str, raw: bytes) -> Listing | None:
        """``raw``, the bytes of a ``tools/list`` result of ``server``, parsed and learnt: the
        server's last listing again when the bytes are the same (what was learnt of it told
        again: another listing may have been learnt since), else parsed now. ``None`` for
        bytes that are no JSON object with a list of tools: the caller reads the whole answer
        as any other."""
        kept = self._listings.get(server)
        if kept is not None and kept.raw == raw:
            self._listings.move_to_end(server)
            self._tell(server, kept.learnt)
            return kept
        try:
            result = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            return None
        listing = Listing(raw, result, tools, self.learn(server, tools))
        if len(raw) > LISTING_MAX_BYTES:
            self._listings.pop(server, None)  # served, not kept
            return listing
        self._listings[server] = listing
        self._listings.move_to_end(server)
        while len(self._listings) > MAX_LISTINGS:
            self._listings.popitem(last=False)
        return listing

    def header_schemas(self, server: str) -> Mapping[str, dict[str, Any]]:
        """The declared ``Mcp-Param-*`` arguments of the tools of ``server``, by tool."""
        return self._headers.get(server, _NONE)

    def param_headers(self, server: str, call: Call) -> dict[str, str]:
        """The ``Mcp-Param-*`` headers a 2026-07-28 client would send with ``call``."""
        schema = self._headers.get(server, _NONE).get(call.tool or "")
        arguments = call.params.get("arguments")
        if schema is None or not isinstance(arguments, dict):
            return {}
        from mcp.shared.inbound import mcp_param_headers, x_mcp_header_map  # header_codec: why

        return mcp_param_headers(x_mcp_header_map(schema), arguments)

    def read_only(self, server: str, tool: str) -> bool:
        return self._read_only.get(server, {}).get(tool, False)

    def knows(self, server: str, tool: str) -> bool:
        """Whether the server listed ``tool``: a name that came from the backend, not a caller."""
        return tool in self._read_only.get(server, {})

    def forget(self) -> None:
        self._read_only.clear()
        self._headers.clear()
        self._listings.clear()


def header_schema(input_schema: Any) -> dict[str, Any] | None:
    """The properties of ``input_schema`` marked ``x-mcp-header``, alone in a schema of the
    same shape (what the SDK's ``validate_mcp_param_headers`` reads); ``None`` without any,
    and for a schema whose marks the SDK refuses (clients send no header for such a tool)."""
    if not isinstance(input_schema, dict) or _MARK not in orjson.dumps(input_schema):
        return None  # the common case, decided by one pass of C: no tool of a listing has marks
    # The SDK's rules, as backends apply them; imported only now (header_codec says why).
    from mcp.shared.inbound import find_invalid_x_mcp_header, x_mcp_header_map

    if find_invalid_x_mcp_header(input_schema) is not None:
        return None
    declared = x_mcp_header_map(input_schema)
    if not declared:
        return None
    kept: dict[str, Any] = {"type": "object", "properties": {}}
    for path, token in declared.items():
        source, target = input_schema, kept
        for key in path:
            source = source["properties"][key]
            target = target["properties"].setdefault(key, {"properties": {}})
        target.update({"type": source.get("type"), X_MCP_HEADER: token})
    return kept


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
        reach = self._reach
        if reach == "all":
            return True
        if self.config.tools.scopes:
            return False
        return reach == "write" or self._all_public

    def verdict(self, tool: str | None, read_only: bool | None = None) -> Verdict:
        """``ok``, ``hidden``, ``sign-in`` or the scopes needed; the rules in order are the
        module's. ``read_only``: the tool's ``readOnlyHint`` when the caller knows it. A rule
        that reads the tool's name is one ``_name_blind`` must know of."""
        if tool is None or not (self.policy.open or self.policy.permits(tool)):
            return "hidden"
        reach = self._reach
        if reach == "all":
            return "ok"
        guards, held = self._guards(tool), self._held
        for scopes in guards:
            if not held & set(scopes):
                return "sign-in" if self.caller.anonymous else scopes
        if reach == "write" or (guards and any(held & (set(s) - NOT_WRITING) for s in guards)):
            return "ok"
        if read_only is None:
            read_only = self.catalog.read_only(self.server, tool)
        if (reach == "read" and read_only) or self._public(tool, read_only):
            return "ok"
        if self.caller.anonymous:
            return "sign-in"
        return (TOOLS_READ,) if read_only else (TOOLS_WRITE,)

    @cached_property
    def _reach(self) -> Reach:
        # Once per request: a ``tools/list`` answer asks for a verdict on every tool.
        return self.caller.reach(self.config.oauth)

    @cached_property
    def _held(self) -> frozenset[str]:
        # A caller without a token holds what a token of the ``anonymous`` role would: a
        # ``tools.scopes`` entry naming ``anonymous`` means the same for both (issue 19 §2).
        return frozenset({ANONYMOUS}) if self.caller.anonymous else self.caller.scopes

    def _guards(self, tool: str) -> list[tuple[str, ...]]:
        """The ``tools.scopes`` entries that match ``tool``: one scope of each is needed."""
        if not self.config.tools.scopes:
            return []
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
        kept = self._kept(tools)
        if len(kept) == len(tools):
            return False
        assert isinstance(result, dict)
        _narrow(result, kept)
        return True

    def view(self, listing: Listing) -> bytes | None:
        """The bytes of ``listing``'s result as this caller may see it, or ``None`` when the
        caller sees it whole (the backend's own bytes go out). The verdicts are this caller's,
        taken now; only the writing of a set of entries kept is shared between callers."""
        if self.open:
            return None
        kept = self._kept_at(listing.tools)
        if len(kept) == len(listing.tools):
            return None
        view = listing.views.get(kept)
        if view is None:
            result = dict(listing.result)  # the copy's own stays as parsed
            _narrow(result, [listing.tools[index] for index in kept])
            view = orjson.dumps(result)
            if len(listing.views) < MAX_VIEWS:
                listing.views[kept] = view
        return view

    def _kept(self, tools: list[Any]) -> list[Any]:
        """The entries of a listing whose verdict is ``ok``."""
        return [tools[index] for index in self._kept_at(tools)]

    def _kept_at(self, tools: list[Any]) -> tuple[int, ...]:
        """Where the entries of a listing whose verdict is ``ok`` are. Where no rule of the
        server reads a tool's name (``_name_blind``), the verdict on a tool is the verdict on
        the first one with the same read-only hint: one verdict for each hint, not one for
        each tool."""
        blind = self._name_blind
        decided: dict[bool, bool] = {}
        kept = []
        for index, tool in enumerate(tools):
            if not isinstance(tool, dict):
                continue
            annotations = tool.get("annotations")  # ``read_only_hint``, inlined
            read_only = isinstance(annotations, dict) and annotations.get("readOnlyHint") is True
            ok = decided.get(read_only)
            if ok is None:
                ok = self.verdict(str(tool.get("name")), read_only) == "ok"
                if blind:
                    decided[read_only] = ok
            if ok:
                kept.append(index)
        return tuple(kept)

    @property
    def _name_blind(self) -> bool:
        """Whether ``verdict`` given a read-only hint never reads the tool's name: no
        allow/deny globs to match, no ``tools.scopes``, no ``tools.public`` list."""
        tools = self.config.tools
        return self.policy.open and not tools.scopes and tools.public is None


def _narrow(result: dict[str, Any], kept: list[Any]) -> None:
    """A ``tools/list`` result narrowed to ``kept``: this caller's view (2026-07-28, caching:
    ``private``)."""
    result["tools"] = kept
    if "cacheScope" in result:
        result["cacheScope"] = "private"
