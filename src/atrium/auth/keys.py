"""The keys Atrium signs access tokens with (RFC 7517 JWK Set, RFC 7518 ES256).

``KeySet`` is the set a process holds: every key in it verifies tokens, and the one that signs
is the newest whose ``signs_from`` has passed. A key therefore reaches every process of the
project verify-only first, and only signs once all of them can verify it: a rotation without a
moment where one replica's token is unknown to another (``atrium.auth.keystore`` keeps the set
in the store and reloads it). Each key's ``kid`` is its RFC 7638 thumbprint; a key taken out of
the set verifies nothing any more, remembered tokens included (``access_tokens``).

The keys used to live in ``.atrium/signing-keys.json`` (mode 0600), which ``atrium init`` still
writes: it is now only what the store imports at first use (``read_key_file``), so tokens
issued before the upgrade keep verifying.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

from atrium.auth.caller_keys import read_jwk_set

SIGNING_KEYS_FILE = "signing-keys.json"
# How long a rotated-in key only verifies before it signs (``atrium.auth.keystore``): fifteen
# polls at the gateway's default interval (2 s), and the clock skew the token checks tolerate
# (``access_tokens.LEEWAY_S``). Nobody waits for it: the previous key signs meanwhile.
DEFAULT_SIGNS_AFTER_S = 30.0


def new_signing_key() -> dict[str, Any]:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, auto_kid=True)
    return dict(key.as_dict(private=True))


def ensure_signing_keys(state_dir: Path) -> tuple[Path, bool]:
    """Create the key file if it does not exist; return its path and whether it was created
    (``atrium init``: what the store imports when the project's gateway first starts)."""
    path = state_dir / SIGNING_KEYS_FILE
    if path.exists():
        return path, False
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps({"keys": [new_signing_key()]}, indent=2) + "\n"
    # O_EXCL: never overwrite a key another process wrote in the meantime.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
    return path, True


def read_key_file(state_dir: Path) -> list[dict[str, Any]] | None:
    """The private JWKs of the project's key file, signing key first; None without a file."""
    return read_jwk_set(state_dir / SIGNING_KEYS_FILE)


@dataclass(frozen=True)
class SigningKey:
    """A key of the set: it verifies while the set holds it, and may sign from ``signs_from``
    (seconds since the epoch; 0: at once)."""

    key: ECKey
    signs_from: float = 0.0

    @property
    def kid(self) -> str:
        return str(self.key.kid)


class KeySet:
    """The signing keys a process holds, newest first: all verify, one signs (``signing``)."""

    def __init__(
        self, keys: Sequence[ECKey | SigningKey], *, clock: Callable[[], float] = time.time
    ) -> None:
        """``keys`` newest first; a bare ``ECKey`` may sign at once."""
        self._clock = clock
        self._entries: tuple[SigningKey, ...] = ()
        self._by_kid: dict[str, ECKey] = {}
        self.replace([key if isinstance(key, SigningKey) else SigningKey(key) for key in keys])

    @classmethod
    def load(cls, state_dir: Path) -> KeySet:
        """The key file's set (creating the file if it is missing): what the store imports at
        first use, and what tools that mint tokens from the file alone read."""
        ensure_signing_keys(state_dir)
        found = read_key_file(state_dir)
        assert found is not None, "ensure_signing_keys wrote it"
        return cls([ECKey.import_key(item) for item in found])

    def replace(self, keys: Sequence[SigningKey]) -> None:
        """Hold ``keys`` (newest first) from now on; the verifiers and issuers that share this
        set see them at once (a reload, ``KeyStore.refresh``)."""
        if not keys:
            raise ValueError("a key set needs at least one key")
        # One assignment each, read without a lock: a request sees the old set or the new one.
        self._by_kid = {entry.kid: entry.key for entry in keys}
        self._entries = tuple(keys)

    @property
    def entries(self) -> tuple[SigningKey, ...]:
        return self._entries

    @property
    def keys(self) -> list[ECKey]:
        return [entry.key for entry in self._entries]

    @property
    def signing(self) -> ECKey:
        """The newest key whose ``signs_from`` has passed. If none has (the key signing was
        retired by a second rotation within the first's delay, or this host's clock is
        behind), the first to come: the only choice left, as signing nothing is no choice."""
        now = self._clock()
        for entry in self._entries:
            if entry.signs_from <= now:
                return entry.key
        return min(self._entries, key=lambda entry: entry.signs_from).key

    def get(self, kid: object) -> ECKey | None:
        """The key called ``kid``; None for any other value, a list or an object included
        (a JOSE header is attacker-chosen JSON: RFC 7515 §4.1.4 makes ``kid`` a string)."""
        return self._by_kid.get(kid) if isinstance(kid, str) and kid else None

    def public_jwks(self) -> dict[str, Any]:
        """RFC 7517 §5: what ``/jwks`` publishes (never a private member): every key that
        verifies, the ones not signing yet included, so that a verifier learns a key before
        the first token it signs."""
        return {"keys": [dict(key.as_dict(private=False)) for key in self.keys]}
