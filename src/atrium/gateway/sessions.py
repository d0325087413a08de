"""``initialize``-era sessions belong to the caller who opened them (issue 19 §8).

A backend names a session with ``Mcp-Session-Id``; anyone who learns that id could otherwise
use the session, read its stream (``GET`` with ``Last-Event-ID``) or end it (``DELETE``). So
the gateway never shows a client the backend's id: it hands out the id sealed with AES-GCM
(key derived from the project's session key, which every replica on every host holds from the
store), the server, the caller's subject and client as associated data. The sealed id tells
nothing of the backend's, and opens only for the caller it was sealed for, on the same server;
for any other caller it is no session: 404, the answer the MCP spec gives for an unknown
session (Streamable HTTP, "Session Management"), so nothing says it exists. No table: every
replica opens an id by itself.

The nonce is derived (HMAC) from what is sealed, so one session keeps one id for its caller.
While the session key rotates, an id sealed under any key held still opens
(``atrium.auth.signed.SessionKeys``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atrium.auth.resource_guard import Caller
from atrium.auth.signed import SessionKeys
from atrium.gateway.errors import INVALID_REQUEST, GatewayError

_NONCE_BYTES = 12
_MAX_PRESENTED = 1024
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")  # b64decode would skip other characters silently


class _Sealing:
    """What one session key seals with."""

    def __init__(self, key: bytes) -> None:
        self.aead = AESGCM(hashlib.sha256(b"atrium mcp-session seal\0" + key).digest())
        self.nonce_key = hashlib.sha256(b"atrium mcp-session nonce\0" + key).digest()


class SessionBinding:
    def __init__(self, keys: SessionKeys) -> None:
        self._keys = keys
        self._sealing: dict[bytes, _Sealing] = {}

    def _of(self, key: bytes) -> _Sealing:
        sealing = self._sealing.get(key)
        if sealing is None:
            if len(self._sealing) > 8:  # keys rotated out: forget them
                self._sealing = {k: v for k, v in self._sealing.items() if k in self._keys.all}
            sealing = self._sealing[key] = _Sealing(key)
        return sealing

    @staticmethod
    def _context(server: str, caller: Caller) -> bytes:
        return "\0".join((server, caller.subject or "", caller.client_id or "")).encode("utf-8")

    def wrap(self, server: str, caller: Caller, backend_id: str) -> str:
        """The id the client sees for the backend's session ``backend_id``."""
        context, plain = self._context(server, caller), backend_id.encode("utf-8")
        sealing = self._of(self._keys.signing)
        digest = hmac.new(sealing.nonce_key, context + b"\0" + plain, hashlib.sha256).digest()
        nonce = digest[:_NONCE_BYTES]
        sealed = nonce + sealing.aead.encrypt(nonce, plain, context)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def unwrap(self, server: str, caller: Caller, presented: str) -> str:
        """The backend's id of a session the client names; 404 unless the caller owns it."""
        try:
            if len(presented) > _MAX_PRESENTED or not _URLSAFE.fullmatch(presented):
                raise ValueError("not a sealed session id")
            sealed = base64.urlsafe_b64decode(presented + "=" * (-len(presented) % 4))
            nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
            context = self._context(server, caller)
            for key in self._keys.verifying():
                with contextlib.suppress(InvalidTag):
                    return self._of(key).aead.decrypt(nonce, body, context).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeError):
            pass
        raise GatewayError(404, INVALID_REQUEST, "Session not found")
