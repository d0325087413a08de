"""Signed, expiring values for the browser: the session cookie, the CSRF token and the pending
authorization request carried through the login and consent forms.

HMAC-SHA256 with the project's session key (``SessionKeys``), which every replica on every
host holds alike: it lives in the store, sealed (``atrium.auth.session_keys``), so a sign-in
started on one replica finishes on another. Nothing here needs a server-side session table.
During a rotation of the key, a value signed with any key held still verifies; new ones are
signed with the key that signs now (the newest whose time has come), so no replica signs with a
key another does not hold yet.

``.atrium/session-key`` (mode 0600), where the key used to live, is what ``atrium init`` still
writes and what the store imports at first use (``read_session_key``).

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atrium.auth.nonces import NonceIssuer
from atrium.auth.sealed_keys import HeldKey, signing_of

SESSION_KEY_FILE = "session-key"
# What a session key must be: ``secrets.token_urlsafe(32)``, as ``atrium init`` writes it.
MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 512


def ensure_session_key(state_dir: Path) -> bytes:
    """Write ``.atrium/session-key`` unless it exists (``atrium init``); its key."""
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


def new_session_key() -> bytes:
    return secrets.token_urlsafe(MIN_KEY_BYTES).encode("ascii")


def read_session_key(state_dir: Path) -> bytes | None:
    """The key of ``.atrium/session-key``; None without the file, ``ValueError`` when it is not
    a key (never quoting it)."""
    path = state_dir / SESSION_KEY_FILE
    try:
        text = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror})") from None
    if not session_key_ok(text):
        raise ValueError(
            f"{path}: not a session key ({MIN_KEY_BYTES} to {MAX_KEY_BYTES} printable ASCII"
            " characters expected)"
        )
    return text


def session_key_ok(key: bytes) -> bool:
    return MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES and all(33 <= b <= 126 for b in key)


class SessionKeys:
    """The session keys a process holds, newest first: every one verifies, one signs
    (``signing``: ``signing_of``'s rule). Shared by the ``Signer``, the DPoP nonces and the
    gateway's sealed session ids, which see a reload (``replace``) at once."""

    def __init__(
        self, keys: Sequence[HeldKey[bytes]], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._entries: tuple[HeldKey[bytes], ...] = ()
        self.all: tuple[bytes, ...] = ()
        self.replace(keys)

    @classmethod
    def of(cls, key: bytes) -> SessionKeys:
        """One key, signing at once."""
        return cls([HeldKey("", key)])

    def replace(self, keys: Sequence[HeldKey[bytes]]) -> None:
        """Hold ``keys`` (newest first) from now on."""
        if not keys:
            raise ValueError("a session key set needs at least one key")
        # One assignment each, read without a lock: a request sees the old set or the new one.
        self._entries = tuple(keys)
        self.all = tuple(entry.key for entry in keys)

    @property
    def entries(self) -> tuple[HeldKey[bytes], ...]:
        return self._entries

    @property
    def signing(self) -> bytes:
        return signing_of(self._entries, self._clock()).key

    def verifying(self) -> tuple[bytes, ...]:
        """Every key, the one that signs now first (the likeliest to match)."""
        signing = self.signing
        return (signing, *(key for key in self.all if key != signing))


class SessionNonces(NonceIssuer):
    """DPoP nonces (``NonceIssuer``) under the session keys: made with the key that signs,
    valid under any key held, so a rotation of the session key refuses no nonce."""

    def __init__(
        self, keys: SessionKeys, *, lifetime_s: float = 300, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(keys.signing, lifetime_s=lifetime_s, clock=clock)
        self._keys = keys
        self._made = (lifetime_s, clock)
        self._issuers: dict[bytes, NonceIssuer] = {}

    def issue(self) -> str:
        return self._issuer(self._keys.signing).issue()

    def valid(self, nonce: str) -> bool:
        return any(self._issuer(key).valid(nonce) for key in self._keys.verifying())

    def _issuer(self, key: bytes) -> NonceIssuer:
        issuer = self._issuers.get(key)
        if issuer is None:
            if len(self._issuers) > 8:  # keys rotated out: forget them
                self._issuers = {k: v for k, v in self._issuers.items() if k in self._keys.all}
            lifetime_s, clock = self._made
            issuer = self._issuers[key] = NonceIssuer(key, lifetime_s=lifetime_s, clock=clock)
        return issuer


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, keys: SessionKeys, *, clock: Callable[[], float] = time.time) -> None:
        self._keys = keys
        self.clock = clock

    def _mac(self, purpose: str, payload: str, key: bytes | None = None) -> str:
        message = f"{purpose}.{payload}".encode("ascii")
        signing = self._keys.signing if key is None else key
        return _b64(hmac.new(signing, message, hashlib.sha256).digest())

    def _verifies(self, purpose: str, payload: str, mac: str) -> bool:
        """Whether ``mac`` is ``payload``'s under one of the keys held (attacker-chosen text
        both: anything not ASCII is simply no match)."""
        try:
            presented = mac.encode("ascii")
            return any(
                hmac.compare_digest(presented, self._mac(purpose, payload, key).encode("ascii"))
                for key in self._keys.verifying()
            )
        except UnicodeError:
            return False

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
            if not self._verifies(purpose, payload, mac):
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
        return self._verifies("csrf", cookie, field)
