"""What ``atrium bridge`` keeps between runs: its registration, its DPoP key and its tokens.

One JSON file per remote server, file mode 0600 in a 0700 folder: the refresh token and the
private DPoP key are the client's credentials (RFC 9449 §2: the key never leaves the client).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Credentials:
    issuer: str | None = None
    client_id: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float = 0.0
    scope: str | None = None
    dpop_key: dict[str, Any] = field(default_factory=dict)


class CredentialStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Credentials:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Credentials()
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: not readable credentials ({exc})") from None
        known = set(Credentials.__dataclass_fields__)
        return Credentials(**{k: v for k, v in data.items() if k in known})

    def save(self, credentials: Credentials) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(asdict(credentials), stream, indent=2)
        os.chmod(temporary, 0o600)  # O_CREAT's mode does not apply to a file that existed
        os.replace(temporary, self.path)
