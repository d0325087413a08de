"""The operator's own tokens: the CLI on the gateway's machine calls hosted servers as admin.

Whoever can read the project's signing key can mint any token anyway, so the CLI mints a
short-lived admin token for the one server it is about to call, rather than asking the
operator to sign in. Its subject names the operating-system user, for the audit trail.

One exception: a CLI run by the ``atrium`` server's tool for one of its callers
(``ATRIUM_ACTING_CALLER``, set by that server only) acts as that caller, never as more: its
tokens carry the caller's subject, client and scopes (none at all for an anonymous caller),
and the audit and usage commands show the caller's own records unless the caller is admin.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

from atrium.auth.assertion import CallerIdentity
from atrium.auth.issuing import mint_access_token
from atrium.auth.roles import ADMIN
from atrium.errors import AtriumError
from atrium.settings import ACTING_CALLER_VARIABLE, Settings

OPERATOR_CLIENT_ID = "atrium-cli"
# The client of the tokens the AI service mints for an agent's user (``atrium.ai.discovery``).
AGENT_CLIENT_ID = "atrium-agents"
# Atrium's web console (``atrium.web``): an OAuth client of this authorization server, known in
# code (``auth.clients.console_client``), whose one redirect is this callback on the gateway.
CONSOLE_CLIENT_ID = "atrium-console"
CONSOLE_CALLBACK_PATH = "/admin/callback"
OPERATOR_TOKEN_TTL_S = 300


def operator_token(settings: Settings, server: str) -> str | None:
    """A token for ``server``: the operator's (admin), or the acting caller's; ``None`` for an
    acting anonymous caller, who calls without one."""
    acting = acting_caller(settings)
    if acting is not None and acting.subject is None:
        return None
    if acting is None:
        subject, client_id, scopes = f"operator:{getpass.getuser()}", OPERATOR_CLIENT_ID, [ADMIN]
    else:
        assert acting.subject is not None
        subject, scopes = acting.subject, sorted(acting.scopes)
        client_id = acting.client_id or OPERATOR_CLIENT_ID
    return mint_access_token(
        settings,
        subject=subject,
        client_id=client_id,
        server=server,
        scopes=scopes,
        ttl_s=OPERATOR_TOKEN_TTL_S,
    )


def acting_environment(caller: CallerIdentity) -> dict[str, str]:
    """What the ``atrium`` server puts in the environment of a CLI it runs for ``caller``."""
    identity = {
        "server": caller.server,
        "subject": caller.subject,
        "client_id": caller.client_id,
        "scopes": sorted(caller.scopes),
        "origin": caller.origin,
        "request_id": caller.request_id,
    }
    return {ACTING_CALLER_VARIABLE: json.dumps(identity)}


def acting_caller(settings: Settings) -> CallerIdentity | None:
    """The caller this CLI acts for, or ``None`` when an operator runs it."""
    raw = settings.environ.get(ACTING_CALLER_VARIABLE)
    return parse_acting_caller(raw) if raw else None


def parse_acting_caller(raw: str) -> CallerIdentity:
    try:
        data: Any = json.loads(raw)
        return CallerIdentity(
            server=str(data["server"]),
            subject=_optional(data["subject"]),
            client_id=_optional(data["client_id"]),
            scopes=frozenset(str(scope) for scope in data["scopes"]),
            origin="in-app" if data["origin"] == "in-app" else "external",
            request_id=str(data["request_id"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        # Never fall back to the operator's powers on a caller we cannot read.
        raise AtriumError(
            f"{ACTING_CALLER_VARIABLE} is malformed ({exc}): refusing to run"
        ) from None


def audit_subject(settings: Settings) -> str | None:
    """Whose audit records this CLI may show: ``None`` for everyone's (the operator, an admin
    caller), else the acting caller's subject; an anonymous caller may see none."""
    acting = acting_caller(settings)
    if acting is None or ADMIN in acting.scopes:
        return None
    if acting.subject is None:
        raise AtriumError("anonymous callers see no audit records: sign in")
    return acting.subject


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)
