"""``initialize``-era sessions belong to the caller who opened them (issue 19 §8).

A backend names a session with ``Mcp-Session-Id``; anyone who learns that id could otherwise
use the session, read its stream (``GET`` with ``Last-Event-ID``) or end it (``DELETE``). So
the gateway never shows a client the backend's id: it hands out ``<backend id>.<tag>``, the tag
an HMAC-SHA256 (key: the project's session key, shared by every replica) over the server, the
caller's subject and client, and the backend id. A request naming a session is forwarded only
when the tag is the current caller's on this server; any other caller gets 404, the answer the
MCP spec gives for an unknown session (Streamable HTTP, "Session Management"), so nothing tells
it the session exists. No table: every replica checks a tag by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from atrium.auth.resource import Caller
from atrium.gateway.errors import INVALID_REQUEST, GatewayError

_TAG_BYTES = 16  # 128 bits: forging one is out of reach


class SessionBinding:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"atrium mcp-session binding\0" + key).digest()

    def _tag(self, server: str, caller: Caller, backend_id: str) -> str:
        message = "\0".join(
            (server, caller.subject or "", caller.client_id or "", backend_id)
        ).encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def wrap(self, server: str, caller: Caller, backend_id: str) -> str:
        """The id the client sees for the backend's session ``backend_id``."""
        return f"{backend_id}.{self._tag(server, caller, backend_id)}"

    def unwrap(self, server: str, caller: Caller, presented: str) -> str:
        """The backend's id of a session the client names; 404 unless the caller owns it."""
        backend_id, _, tag = presented.rpartition(".")
        if not backend_id or not hmac.compare_digest(tag, self._tag(server, caller, backend_id)):
            raise GatewayError(404, INVALID_REQUEST, "Session not found")
        return backend_id
