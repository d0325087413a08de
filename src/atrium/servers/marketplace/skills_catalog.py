"""The tools the hosted servers offer, for ``analyze_skill``'s tool-name rule.

Source: the registry as the store holds it (the ``mcp_servers`` table the gateway routes by:
which servers are hosted and enabled), and each server's ``tools/list`` asked through the gateway
as the caller, exactly as the caller's own client would ask (a token minted for the caller's
subject and scopes, for that one server, client ``atrium-agents``: the audit marks these calls
in-app). So a skill is checked against the tools its reader can see; the gateway's policy
decides, not this server, and a tool the reader may not call reads as not offered.

The gateway's own tool catalog lives in the gateway's memory, which a server process cannot
read (servers never import the gateway), and ``atrium plugins mcp tools`` is this same listing
from the CLI. Only the servers a skill names are listed, and all of them only when it names
bare tools. A server whose OAuth scopes the caller holds none of offers the caller nothing
(no listing needed); one that cannot be listed (down, DPoP-only) leaves its mentions unchecked,
with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from atrium.auth.issuing import mint_access_token
from atrium.auth.operator import AGENT_CLIENT_ID
from atrium.auth.roles import ADMIN
from atrium.client.checks import list_all_tools
from atrium.client.connect import connect, gateway_url
from atrium.errors import AtriumError
from atrium.registry.schema import parse_server_config
from atrium.settings import Settings
from atrium.store import ServerRecord, Store

logger = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0
TOKEN_TTL_S = 60


@dataclass(frozen=True)
class Catalog:
    """``servers``: the enabled hosted servers; ``tools``: for each one listed, its tools'
    names, or why they could not be listed."""

    servers: frozenset[str]
    tools: Mapping[str, frozenset[str] | str]

    def offered_anywhere(self, tool: str) -> bool:
        """Whether a server that could be listed offers ``tool``."""
        return any(not isinstance(names, str) and tool in names for names in self.tools.values())

    @property
    def unlisted(self) -> list[str]:
        """The servers whose tools could not be listed."""
        return sorted(name for name, names in self.tools.items() if isinstance(names, str))


async def hosted_tools(
    settings: Settings,
    store: Store,
    *,
    subject: str,
    scopes: frozenset[str],
    wanted: Iterable[str] | None,
) -> Catalog:
    """The catalog of the servers in ``wanted`` (None: every enabled one) as ``subject``
    sees them through the gateway."""
    records = {record.name: record for record in await store.servers.list() if record.enabled}
    names = sorted(records if wanted is None else set(records) & set(wanted))
    listings = await asyncio.gather(
        *(_listing(settings, records[name], subject, scopes) for name in names)
    )
    return Catalog(frozenset(records), dict(zip(names, listings, strict=True)))


def _closed_to(record: ServerRecord, scopes: frozenset[str]) -> bool:
    """Whether the gateway lets none of ``scopes`` in (``atrium.gateway.access`` decides the
    same way): such a server offers the caller nothing, which needs no listing to know."""
    try:
        wanted = parse_server_config(record.config).oauth.scopes
    except ValidationError:  # the gateway does not route it either
        return True
    return bool(wanted) and ADMIN not in scopes and not scopes & set(wanted)


async def _listing(
    settings: Settings, record: ServerRecord, subject: str, scopes: frozenset[str]
) -> frozenset[str] | str:
    if _closed_to(record, scopes):
        return frozenset()
    server = record.name
    token = mint_access_token(
        settings,
        subject=subject,
        client_id=AGENT_CLIENT_ID,
        server=server,
        scopes=sorted(scopes),
        ttl_s=TOKEN_TTL_S,
    )
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with connect(
            gateway_url(settings, server), headers=headers, timeout_s=LIST_TIMEOUT_S, hint=None
        ) as connection:
            tools = await list_all_tools(connection)
    except AtriumError as exc:
        logger.info("could not list the tools of %s for %s: %s", server, subject, exc)
        return str(exc)
    return frozenset(tool.name for tool in tools)
