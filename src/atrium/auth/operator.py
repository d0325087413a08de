"""The operator's own tokens: the CLI on the gateway's machine calls hosted servers as admin.

Whoever can read the project's signing key can mint any token anyway, so the CLI mints a
short-lived admin token for the one server it is about to call, rather than asking the
operator to sign in. Its subject names the operating-system user, for the audit trail.
"""

from __future__ import annotations

import getpass

from atrium.auth.keys import KeySet
from atrium.auth.roles import ADMIN
from atrium.auth.tokens import TokenIssuer
from atrium.settings import Settings

OPERATOR_CLIENT_ID = "atrium-cli"
OPERATOR_TOKEN_TTL_S = 300


def operator_token(settings: Settings, server: str) -> str:
    issuer = TokenIssuer(
        KeySet.load(settings.state_dir), settings.issuer, ttl_s=OPERATOR_TOKEN_TTL_S
    )
    token, _ = issuer.mint(
        subject=f"operator:{getpass.getuser()}",
        client_id=OPERATOR_CLIENT_ID,
        audience=[settings.endpoint_for(server)],
        scopes=[ADMIN],
    )
    return token
