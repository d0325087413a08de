"""Roles and scopes (the seeds' scope reference).

A user has one role; a role grants scopes. The built-in scopes: ``anonymous`` (public tools
only), ``user``, ``admin`` (every tool), ``tools:read`` (tools annotated ``readOnlyHint``),
``tools:write`` (any tool). Projects add roles in ``atrium.yaml`` (``oauth.roles``); a custom
role may grant custom scopes that servers name in ``oauth.scopes`` or per-tool ``scopes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

ADMIN = "admin"
USER = "user"
ANONYMOUS = "anonymous"
TOOLS_READ = "tools:read"
TOOLS_WRITE = "tools:write"
BUILTIN_SCOPES = (ADMIN, USER, ANONYMOUS, TOOLS_READ, TOOLS_WRITE)

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
