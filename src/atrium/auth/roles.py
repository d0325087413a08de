"""Roles and scopes (the seeds' scope reference).

A user has one role; a role grants scopes. The built-in scopes: ``anonymous`` (public tools
only), ``user``, ``admin`` (every tool), ``tools:read`` (tools annotated ``readOnlyHint``),
``tools:write`` (any tool). Projects add roles in ``atrium.yaml`` (``oauth.roles``); a custom
role may grant custom scopes that servers name in ``oauth.scopes`` or per-tool ``scopes``.

``user`` lets a caller in but lets it call nothing by itself: the ``user`` role carries
``tools:write`` for that and the ``reader`` role only ``tools:read``, so a reader stays
read-only on every server, also on one whose ``oauth.scopes`` names ``user`` (issue 19 §3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

ADMIN = "admin"
USER = "user"
ANONYMOUS = "anonymous"
TOOLS_READ = "tools:read"
TOOLS_WRITE = "tools:write"
BUILTIN_SCOPES = (ADMIN, USER, ANONYMOUS, TOOLS_READ, TOOLS_WRITE)
# Scopes that never lift read-only, wherever a server's policy names them (issue 19 §3):
# ``user`` lets in, ``tools:read`` is read-only by definition, ``anonymous`` is public only.
NOT_WRITING = frozenset({USER, TOOLS_READ, ANONYMOUS})

# How far a token's scopes reach on one server, least first: the public tools (what a caller
# without a token gets there), the tools annotated ``readOnlyHint`` too, every tool, every tool
# whatever its per-tool ``scopes`` ask.
Reach = Literal["public", "read", "write", "all"]

BUILTIN_ROLES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        ADMIN: (ADMIN, USER, TOOLS_READ, TOOLS_WRITE),
        USER: (USER, TOOLS_READ, TOOLS_WRITE),
        "reader": (USER, TOOLS_READ),
        ANONYMOUS: (ANONYMOUS,),
    }
)


class Roles:
    def __init__(self, custom: Mapping[str, Iterable[str]] | None = None) -> None:
        merged = dict(BUILTIN_ROLES)
        merged.update({name: tuple(scopes) for name, scopes in (custom or {}).items()})
        self._roles = MappingProxyType(merged)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._roles)

    def scopes_of(self, role: str) -> frozenset[str]:
        return frozenset(self._roles.get(role, ()))

    def known(self, role: str) -> bool:
        return role in self._roles

    def all_scopes(self) -> tuple[str, ...]:
        seen = dict.fromkeys(BUILTIN_SCOPES)
        for scopes in self._roles.values():
            seen.update(dict.fromkeys(scopes))
        return tuple(seen)


def reach(scopes: frozenset[str], server_scopes: Iterable[str] = ()) -> Reach:
    """How far ``scopes`` reach on a server whose ``oauth.scopes`` are ``server_scopes``.

    ``admin`` reaches all (seed 000: "all tools including admin"); ``tools:write`` every tool,
    and so does a scope the server names itself (``oauth.scopes: [reports]``: holding
    ``reports`` is what the operator asked for), unless it is one of ``NOT_WRITING``;
    ``tools:read`` the read-only tools. Anything else (``user``, ``anonymous``, a scope this
    server does not name) reaches no further than a caller without a token.
    """
    if ADMIN in scopes:
        return "all"
    if TOOLS_WRITE in scopes or scopes & (set(server_scopes) - NOT_WRITING):
        return "write"
    if TOOLS_READ in scopes:
        return "read"
    return "public"


# RFC 6749 §3.3: a request that names no scope gets a pre-defined default. Ours is what the
# ``user`` and ``anonymous`` roles grant, never ``admin`` or a custom scope by mere omission:
# a client that needs more asks for it, as the MCP spec's step-up (403 ``insufficient_scope``
# naming the scope) leads it to.
DEFAULT_SCOPES = frozenset({USER, TOOLS_READ, TOOLS_WRITE, ANONYMOUS})


def default_scopes(server_scopes: Iterable[str] = ()) -> frozenset[str]:
    """The scopes asked for when a request names none: ``DEFAULT_SCOPES`` and the
    ``oauth.scopes`` of the servers it names as RFC 8707 ``resource`` (what they require).
    The user's role and the client's registered scope then bound them, as any request."""
    return DEFAULT_SCOPES | frozenset(server_scopes)
