"""The keys Atrium signs access tokens with (RFC 7517 JWK Set, RFC 7518 ES256).

Kept as a private JWK Set in ``.atrium/signing-keys.json`` with file mode 0600. Each key has a
``kid`` (RFC 7638 thumbprint) so that a rotated-in key and the one it replaces can both verify
tokens during the overlap; the first key of the set is the one that signs. A key rotated out
of the set verifies nothing any more, in every process, once it has reloaded the set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

SIGNING_KEYS_FILE = "signing-keys.json"


def new_signing_key() -> dict[str, Any]:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, auto_kid=True)
    return dict(key.as_dict(private=True))


def ensure_signing_keys(state_dir: Path) -> tuple[Path, bool]:
    """Create the key set if it does not exist; return its path and whether it was created."""
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


class KeySet:
    """The loaded signing keys: the first signs, all verify (rotation overlap)."""

    def __init__(self, keys: list[ECKey], path: Path | None = None) -> None:
        if not keys:
            raise ValueError("a key set needs at least one key")
        self.keys = keys
        self._by_kid = {key.kid: key for key in keys}
        self.path = path
        # The file's bytes these keys were read from: the whole (small) file, not its mtime and
        # size, since two rotations within the file system's time resolution write files of one
        # size and must still be told apart.
        self._stamp: bytes | None = None

    @classmethod
    def load(cls, state_dir: Path) -> KeySet:
        """The project's key set, created on first use (``atrium init`` normally creates it)."""
        path, _ = ensure_signing_keys(state_dir)
        data = path.read_bytes()
        loaded = cls(_parse(data), path)
        loaded._stamp = data
        return loaded

    def reload_if_changed(self) -> bool:
        """Pick up a rotation (``atrium admin keys rotate``) made while this process runs."""
        if self.path is None:
            return False
        try:
            stamp = self.path.read_bytes()
        except FileNotFoundError:
            return False  # keep verifying with what we have
        if stamp == self._stamp:
            return False
        keys = _parse(stamp)
        if not keys:
            raise ValueError(f"{self.path} holds no key")
        self.keys, self._by_kid, self._stamp = keys, {key.kid: key for key in keys}, stamp
        return True

    @property
    def signing(self) -> ECKey:
        return self.keys[0]

    def get(self, kid: object) -> ECKey | None:
        """The key called ``kid``; None for any other value, a list or an object included
        (a JOSE header is attacker-chosen JSON: RFC 7515 §4.1.4 makes ``kid`` a string)."""
        return self._by_kid.get(kid) if isinstance(kid, str) and kid else None

    def public_jwks(self) -> dict[str, Any]:
        """RFC 7517 §5: what ``/jwks`` publishes (never a private member)."""
        return {"keys": [dict(key.as_dict(private=False)) for key in self.keys]}


def _parse(data: bytes) -> list[ECKey]:
    return [ECKey.import_key(item) for item in json.loads(data)["keys"]]


def rotate_signing_keys(state_dir: Path, *, keep: int = 2) -> str:
    """Put a new signing key first and keep the newest ``keep`` keys; the new ``kid``.

    Tokens signed by a kept key still verify until they expire, so ``keep`` must cover the
    access-token lifetime between two rotations.
    """
    path, _ = ensure_signing_keys(state_dir)
    data = json.loads(path.read_text(encoding="utf-8"))
    key = new_signing_key()
    data["keys"] = [key, *data["keys"]][: max(keep, 1)]
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
    return str(key["kid"])
