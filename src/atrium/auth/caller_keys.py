"""The caller-assertion keys as files: what backends read, and what the store imports.

A caller-assertion key is an Ed25519 key pair (RFC 8037) as a JWK whose ``kid`` is its RFC 7638
thumbprint. Two files in the project's state folder:

- ``caller-keys.pub.json`` (mode 0644): the public JWK Set, with the issuer, that every backend
  reads to check the gateway's assertions (``AssertionVerifier``). Written from the store's
  keys by whoever runs backends (the supervisor) and by every gateway, for its own folder
  (``publish_public_keys``; ``atrium.auth.caller_keystore``).
- ``caller-keys.json`` (mode 0600): the private set ``atrium init`` writes. The store imports
  it at first use; from then on the store's keys sign and the file is not read again. Tools
  and tests that sign outside a gateway still read it (``AssertionSigner.load``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ALGORITHM = "EdDSA"
PRIVATE_FILE = "caller-keys.json"
PUBLIC_FILE = "caller-keys.pub.json"


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def private_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    public = key.public_key().public_bytes_raw()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(public).decode("ascii")}
    private = b64(key.private_bytes_raw()).decode("ascii")
    return {**jwk, "d": private, "kid": thumbprint(jwk), "alg": ALGORITHM, "use": "sig"}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638: the required members of an OKP key in lexicographic order, no spaces."""
    required = {member: jwk[member] for member in ("crv", "kty", "x")}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":")).encode("ascii")
    return b64(hashlib.sha256(canonical).digest()).decode("ascii")


def public_member(jwk: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k != "d"}


def _write(path: Path, data: Mapping[str, Any], mode: int) -> None:
    """Replace ``path`` at once (a reader sees the old file or the new one), through a
    temporary file of this writer's own: two processes writing the public file at once each
    rename a whole file."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(json.dumps(data, indent=2) + "\n")
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def ensure_caller_keys(state_dir: Path, issuer: str) -> tuple[Path, bool]:
    """Create the key pair files that are missing (``atrium init``); the private file's path
    and whether it was created. An existing public file is left as it is: it holds the store's
    keys, which the private file may no longer be."""
    private = state_dir / PRIVATE_FILE
    created = not private.exists()
    if created:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(private, {"keys": [private_jwk(Ed25519PrivateKey.generate())]}, 0o600)
    if not (state_dir / PUBLIC_FILE).exists():
        keys = json.loads(private.read_text(encoding="utf-8"))["keys"]
        publish_public_keys(state_dir, issuer, keys)
    return private, created


def rotate_caller_keys(state_dir: Path, issuer: str, *, keep: int = 2) -> str:
    """Put a new key first in the key files, keep the newest ``keep``; the new ``kid``. For a
    folder without a store (tools, tests): a project's keys rotate in its store
    (``atrium admin keys rotate --caller``).

    The public set is written first, so a backend knows the new key before any assertion
    signed with it can reach it.
    """
    private = state_dir / PRIVATE_FILE
    ensure_caller_keys(state_dir, issuer)
    data = json.loads(private.read_text(encoding="utf-8"))
    new = private_jwk(Ed25519PrivateKey.generate())
    keys = [new, *data["keys"]][: max(keep, 1)]
    publish_public_keys(state_dir, issuer, keys)
    _write(private, {"keys": keys}, 0o600)
    return str(new["kid"])


def read_private_keys(state_dir: Path) -> list[dict[str, Any]] | None:
    """The private JWKs of ``caller-keys.json``, signing key first; None without the file."""
    return read_jwk_set(state_dir / PRIVATE_FILE)


def read_jwk_set(path: Path) -> list[dict[str, Any]] | None:
    """The keys of the JWK set in ``path``, in its order (the access-token keys' file too:
    ``atrium.auth.keys``); None without the file, ``ValueError`` naming the file when it holds
    no JWK set."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a JWK set ({exc})") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise ValueError(f'{path}: not a JWK set ("keys" must be a list of keys)')
    return keys


def publish_public_keys(state_dir: Path, issuer: str, keys: Sequence[Mapping[str, Any]]) -> bool:
    """Write the public halves of ``keys`` (JWKs) with ``issuer`` as the public file, unless it
    says that already; whether it was written."""
    public = {"issuer": issuer, "keys": [public_member(k) for k in keys]}
    path = state_dir / PUBLIC_FILE
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current == public:
        return False
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(path, public, 0o644)
    return True


def public_keys(state_dir: Path) -> dict[str, Any]:
    """The public JWK Set (with the issuer) as backends read it."""
    data: dict[str, Any] = json.loads((state_dir / PUBLIC_FILE).read_text(encoding="utf-8"))
    return data


@dataclass(frozen=True)
class KeyFile:
    """A JWK Set file as read once, with the (inode, mtime, size) that tells when it has
    changed: every write renames a new file into place, so the inode changes even when two
    writes of one size fall within one tick of the file system's clock."""

    data: dict[str, Any]
    stamp: tuple[int, int, int]

    @classmethod
    def read(cls, path: Path) -> KeyFile:
        stamp = cls.stamp_of(path)  # first: a change made while reading shows at the next look
        return cls(json.loads(path.read_text(encoding="utf-8")), stamp)

    @staticmethod
    def stamp_of(path: Path) -> tuple[int, int, int]:
        status = path.stat()
        return status.st_ino, status.st_mtime_ns, status.st_size
