"""Signed, expiring values for the browser: the session cookie, the CSRF token and the pending
authorization request carried through the login and consent forms.

HMAC-SHA256 with a key kept in ``.atrium/session-key`` (mode 0600), shared by every replica that
shares the project folder; nothing here needs a server-side session table.

Why not ``itsdangerous``: it would do the same (an HMAC per purpose, checked with
``hmac.compare_digest``) with no gain in security or speed, and its timed serializer decides the
lifetime when reading (``max_age``) where here the writer does (a session outlives a pending
authorization request); adopting it would change the token format and sign every user out, for a
dependency replacing some forty lines.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SESSION_KEY_FILE = "session-key"


def ensure_session_key(state_dir: Path) -> bytes:
    path = state_dir / SESSION_KEY_FILE
    if not path.exists():
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process wrote it first: use theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as stream:
                stream.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="ascii").strip().encode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.clock = clock

    def _mac(self, purpose: str, payload: str) -> str:
        message = f"{purpose}.{payload}".encode("ascii")
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def dumps(self, purpose: str, value: Any, ttl_s: float) -> str:
        """``value`` (JSON) signed for one ``purpose``, so a cookie can't pass for a form field."""
        body = json.dumps({"v": value, "exp": int(self.clock() + ttl_s)}, separators=(",", ":"))
        payload = _b64(body.encode("utf-8"))
        return f"{payload}.{self._mac(purpose, payload)}"

    def loads(self, purpose: str, token: str | None) -> Any:
        """The value, or ``None`` when missing, forged, for another purpose or expired."""
        if not token or token.count(".") != 1 or len(token) > 16384:
            return None
        payload, mac = token.split(".")
        try:
            if not hmac.compare_digest(mac, self._mac(purpose, payload)):
                return None
            data = json.loads(_unb64(payload))
        except (ValueError, UnicodeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
            return None
        return data.get("v") if data["exp"] > self.clock() else None

    def csrf_token(self, cookie: str) -> str:
        return self._mac("csrf", cookie)

    def csrf_ok(self, cookie: str | None, field: str | None) -> bool:
        # Double submit, signed (OWASP CSRF cheat sheet): a cross-site form can send the cookie
        # but cannot read it to compute the matching field.
        if not cookie or not field:
            return False
        return hmac.compare_digest(self._mac("csrf", cookie), field)
