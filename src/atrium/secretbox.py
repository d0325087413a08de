"""Secrets at rest: AES-256-GCM under a key ring (issue 14, the marketplace's secrets).

Each stored value is sealed with AES-256-GCM (NIST SP 800-38D) under the ring's current key,
with a fresh random 96-bit nonce per value (§8.2.2, the random construction: far below its
2^32 values per key between two rotations) and with the secret's owner and name as associated
data, so a ciphertext copied into another row (another owner, another name) fails
authentication instead of decrypting. The key's id is stored beside each value: values sealed
under different keys coexist while a rotation re-encrypts them.

Where the key ring comes from, first match wins:

* ``ATRIUM_SECRET_KEY`` holding one key: 32 random bytes in base64, standard or URL-safe
  (``openssl rand -base64 32``), a ring of that key alone. It cannot be rotated in place:
  rotating needs a ring file.
* ``ATRIUM_SECRET_KEY`` holding ``$file:PATH``: the ring file at ``PATH`` (relative to the
  project folder unless absolute), the ``{$file: path}`` of server YAML as one string. Quote it
  in a shell, where ``$file`` would be expanded: ``ATRIUM_SECRET_KEY='$file:/run/keys/atrium'``.
* ``.atrium/secret-key``, which ``atrium init`` writes with mode 0600, and otherwise only the
  first secret stored (``SecretBox.start``): with secrets stored, a missing ring is a lost one
  to restore, as a new key would silently leave every stored value unreadable.

A ring file is JSON: ``{"current": "<id>", "keys": {"<id>": "<base64url key>", ...}}``. A key's
id is its fingerprint (16 hex digits of SHA-256 over a label and the key): the same key has the
same id wherever it is read from, an id tells nothing about its key, and a hand-edited ring
whose ids do not match their keys is refused rather than half used.

Rotation (``atrium admin keys rotate --secrets``; ``atrium.store.secrets.rotate_secret_key``)
adds a new current key and keeps the old ones until every value is re-encrypted, then drops
the keys no value uses. Processes that are running keep working: ``seal`` re-reads the ring
file first (nothing is sealed under a key being retired), and ``open`` re-reads it when it
meets a key id it does not know. A ring re-read only gains keys, never forgets one it holds.

Names follow ``SECRET_NAME`` (``NAME_RULE``): the names of environment variables, in capitals,
because a secret is most often handed to a server as one (``env: {API_TOKEN: {$secret: NAME}}``)
and one spelling per name leaves no ``api_token`` beside ``API_TOKEN``.

Errors: ``SecretKeyError`` (the ring cannot be read or written) and ``SecretUnreadable`` (a
stored value does not decrypt). No message ever holds a key or a value.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atrium.errors import AtriumError
from atrium.settings import Settings

logger = logging.getLogger(__name__)

SECRET_KEY_VARIABLE = "ATRIUM_SECRET_KEY"
SECRET_KEY_FILE = "secret-key"
FILE_REFERENCE = "$file:"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, SP 800-38D §8.2
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
NAME_RULE = (
    "capital letters, digits and '_', starting with a letter, at most 64 characters"
    " (like API_TOKEN)"
)
MAX_VALUE_BYTES = 64 * 1024
_ID_LABEL = b"atrium secret key id\x00"
_AD_LABEL = b"atrium secret\x00"


class SecretKeyError(AtriumError):
    """The key ring cannot be read or written; the message says where and why."""


class SecretUnreadable(AtriumError):
    """A stored value does not decrypt: its key left the ring, or the row was altered."""

    def __init__(self, owner: str, name: str, reason: str) -> None:
        self.owner = owner
        self.name = name
        super().__init__(f"secret {name} cannot be decrypted: {reason}")


@dataclass(frozen=True)
class Sealed:
    """A value as stored: the id of the key that sealed it, its nonce, ciphertext with tag."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


def check_name(name: str) -> str:
    """``name`` if it follows ``NAME_RULE``; ``ValueError`` saying the rule otherwise."""
    if not SECRET_NAME.match(name):
        raise ValueError(f"{name!r} is not a secret name: use {NAME_RULE}")
    return name


def check_value(value: str) -> bytes:
    """The UTF-8 of ``value``; ``ValueError`` (never quoting it) if it cannot be stored.

    NUL is refused because an environment variable, where ``$secret`` puts a value, cannot
    hold one."""
    if not value:
        raise ValueError("the value is empty")
    if "\x00" in value:
        raise ValueError("the value contains a NUL character, which no environment variable holds")
    data = value.encode("utf-8", errors="strict")
    if len(data) > MAX_VALUE_BYTES:
        raise ValueError(f"the value is {len(data)} bytes long; at most {MAX_VALUE_BYTES}")
    return data


def key_id(key: bytes) -> str:
    """The id of ``key``: a fingerprint that tells nothing about it."""
    return hashlib.sha256(_ID_LABEL + key).hexdigest()[:16]


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


class SecretBox:
    """The key ring: seals values under its current key, opens them under any key it holds."""

    def __init__(
        self, keys: Mapping[str, bytes], current: str | None, *, path: Path | None
    ) -> None:
        """``current`` None: the project's own ring file, not written yet (``start``)."""
        if current is not None and current not in keys:
            raise ValueError(f"the current key {current} is not in the ring")
        self._keys = dict(keys)
        self._current = current
        self._path = path
        self._stamp: bytes | None = None

    @classmethod
    def load(cls, settings: Settings) -> SecretBox:
        """The project's ring (see the module docstring for where it is read from). The
        project's own ring file may be missing: the box then seals and opens nothing (each
        try is a ``SecretKeyError``) until the file is restored or ``start`` writes it."""
        inline = _inline_key(settings)
        if inline is not None:
            return cls({key_id(inline): inline}, key_id(inline), path=None)
        path = ring_path(settings)
        assert path is not None, "the key is not inline: there is a file"
        loaded = cls({}, None, path=path)
        if path != settings.state_dir / SECRET_KEY_FILE or path.exists():
            loaded.refresh()  # a ``$file:`` the operator named must be there at once
        return loaded

    @property
    def current(self) -> str:
        """The id of the key new values are sealed under; ``SecretKeyError`` with no ring."""
        if self._current is None:
            self.refresh()
        assert self._current is not None, "refresh read a ring or raised"
        return self._current

    @property
    def written(self) -> bool:
        """False while the ring this box was loaded from had no file (``start``)."""
        return self._current is not None

    def start(self) -> None:
        """Write the project's own ring (one new key) unless it is there now, and read it: only
        while no secret is stored (``atrium.store.secrets`` checks, under its lock)."""
        if self._current is None and self._path is not None:
            ensure_secret_key(self._path.parent)
        self.refresh()

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    @property
    def path(self) -> Path | None:
        """The ring file; None when the key is ``ATRIUM_SECRET_KEY`` itself."""
        return self._path

    def seal(self, value: str, *, owner: str, name: str) -> Sealed:
        """``value`` sealed under the current key, read afresh from the ring file."""
        data = check_value(value)
        self.refresh()
        current = self.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._keys[current]).encrypt(nonce, data, _associated(owner, name))
        return Sealed(current, nonce, sealed)

    def open(self, sealed: Sealed, *, owner: str, name: str) -> str:
        """The value ``sealed`` holds; ``SecretUnreadable`` if it does not decrypt here."""
        if sealed.key_id not in self._keys:
            self.refresh()  # rotated by another process since this ring was read
        key = self._keys.get(sealed.key_id)
        if key is None:
            where = str(self._path) if self._path else SECRET_KEY_VARIABLE
            raise SecretUnreadable(owner, name, f"its key {sealed.key_id} is not in {where}")
        try:
            data = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _associated(owner, name))
        except (InvalidTag, ValueError):
            # The tag covers the owner and the name: a value moved to another row lands here.
            raise SecretUnreadable(
                owner, name, "the stored value was altered or does not belong to this row"
            ) from None
        return data.decode("utf-8")

    def refresh(self) -> None:
        """Take in a ring file changed by another process: its current key and any key it
        adds. Keys this ring holds stay (a value sealed by a process that read the ring before
        a rotation must still open)."""
        if self._path is None:
            return
        data = _read(self._path)
        if data == self._stamp:
            return
        keys, current = _parse(data, self._path)
        self._keys.update(keys)
        self._current, self._stamp = current, data


def ring_path(settings: Settings) -> Path | None:
    """The ring file of the project: ``$file:`` of ``ATRIUM_SECRET_KEY``, else
    ``.atrium/secret-key``; None when ``ATRIUM_SECRET_KEY`` holds the key itself."""
    value = settings.environ.get(SECRET_KEY_VARIABLE, "").strip()
    if value.startswith(FILE_REFERENCE):
        reference = value.removeprefix(FILE_REFERENCE).strip()
        if not reference:
            raise SecretKeyError(f"{SECRET_KEY_VARIABLE}: '{FILE_REFERENCE}' names no file")
        return settings.project_dir / reference
    if value:
        return None
    return settings.state_dir / SECRET_KEY_FILE


def ensure_secret_key(state_dir: Path) -> tuple[Path, bool]:
    """Write ``.atrium/secret-key`` (a ring of one new key, mode 0600) unless it exists;
    return its path and whether it was written. For ``atrium init`` and ``SecretBox.start``
    only: anywhere else a missing ring may be a lost one (see the module docstring)."""
    path = state_dir / SECRET_KEY_FILE
    if path.exists():
        return path, False
    key = new_key()
    with _writing(path):
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes starting at once must not each write a key of their own.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path, False
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(_text({key_id(key): key}, key_id(key)))
    return path, True


def add_key(settings: Settings) -> SecretBox:
    """Put a new key in the ring as its current key, keeping the others; the new ring."""
    path = _rotatable(settings)
    keys, _ = _parse(_read(path), path)
    key = new_key()
    keys[key_id(key)] = key
    _write(path, keys, key_id(key))
    return SecretBox.load(settings)


def retire_keys(settings: Settings, in_use: set[str]) -> list[str]:
    """Drop from the ring every key but the current one and those in ``in_use``; the ids
    dropped. Only once no stored value needs them (``atrium.store.secrets``)."""
    path = _rotatable(settings)
    keys, current = _parse(_read(path), path)
    dropped = sorted(set(keys) - in_use - {current})
    if dropped:
        _write(path, {k: v for k, v in keys.items() if k not in dropped}, current)
    return dropped


@contextlib.contextmanager
def rotation_lock(settings: Settings) -> Iterator[None]:
    """Held for a whole rotation, so two rotations never write the ring over each other."""
    path = _rotatable(settings)
    lock = path.with_name(path.name + ".lock")
    with _writing(lock):
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _rotatable(settings: Settings) -> Path:
    path = ring_path(settings)
    if path is None:
        raise SecretKeyError(
            f"{SECRET_KEY_VARIABLE} holds the key itself, which cannot be rotated in place: keep"
            f" the ring in a file and set {SECRET_KEY_VARIABLE}='{FILE_REFERENCE}PATH'"
        )
    return path


def _inline_key(settings: Settings) -> bytes | None:
    value = settings.environ.get(SECRET_KEY_VARIABLE, "").strip()
    if not value or value.startswith(FILE_REFERENCE):
        return None
    standard = value.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretKeyError(
            f"{SECRET_KEY_VARIABLE} must be {KEY_BYTES} random bytes in base64"
            f" (`openssl rand -base64 {KEY_BYTES}`) or '{FILE_REFERENCE}PATH' naming a key ring"
        )
    return key


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretKeyError(
            f"{path}: the secret key ring is missing, and stored secrets open only with the ring"
            f" that sealed them: restore it from a backup (mode 0600), or set"
            f" {SECRET_KEY_VARIABLE}='{FILE_REFERENCE}PATH' to where it is kept"
        ) from None
    except OSError as exc:
        raise SecretKeyError(f"{path}: cannot read the secret key ring: {exc.strerror}") from None
    if mode & 0o077:
        logger.warning("%s can be read by others than its owner: chmod 600 it", path)
    return data


def _parse(data: bytes, path: Path) -> tuple[dict[str, bytes], str]:
    """The keys by id and the current id of a ring file; ``SecretKeyError`` saying what is
    wrong (never a key)."""
    try:
        document = json.loads(data)
    except ValueError:
        raise SecretKeyError(f"{path}: not a key ring (JSON expected)") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), dict):
        raise SecretKeyError(f'{path}: not a key ring: "keys" must be an object')
    keys = {str(kid): _key(path, str(kid), text) for kid, text in document["keys"].items()}
    current = document.get("current")
    if not isinstance(current, str) or current not in keys:
        raise SecretKeyError(f'{path}: "current" must name one of the ring\'s keys')
    return keys, current


def _key(path: Path, kid: str, text: object) -> bytes:
    key = b""
    if isinstance(text, str):
        with contextlib.suppress(binascii.Error, ValueError):
            key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(key) != KEY_BYTES:
        raise SecretKeyError(f"{path}: key {kid} is not {KEY_BYTES} bytes of base64url")
    if key_id(key) != kid:
        raise SecretKeyError(f"{path}: key {kid} does not match its id")
    return key


def _text(keys: Mapping[str, bytes], current: str) -> str:
    encoded = {kid: base64.urlsafe_b64encode(key).decode("ascii") for kid, key in keys.items()}
    return json.dumps({"current": current, "keys": encoded}, indent=2) + "\n"


def _write(path: Path, keys: Mapping[str, bytes], current: str) -> None:
    """Replace the ring file at once: a reader sees the old ring or the new one, never half."""
    temporary = path.with_name(path.name + ".tmp")
    with _writing(path):
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(_text(keys, current))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise SecretKeyError(f"{path}: cannot write the secret key ring: {exc.strerror}") from None


def _associated(owner: str, name: str) -> bytes:
    # JSON keeps the pair unambiguous whatever characters an owner holds.
    return _AD_LABEL + json.dumps([owner, name]).encode("utf-8")
