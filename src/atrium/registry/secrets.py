"""Resolving ``$env`` and ``$file`` references when a server starts.

References stay unresolved in the YAML and the store, so no secret is ever written there. At
load time an unset variable is only a warning (the server may never be started here); at start
it is an error that names the file, the server and the key, and nothing is started.
"""

from __future__ import annotations

from collections.abc import Mapping

from atrium.errors import ConfigError, Problem
from atrium.registry.loader import ServerEntry
from atrium.registry.schema import EnvRef, FileRef, RemoteServer, SecretValue
from atrium.settings import Settings

MAX_SECRET_FILE_BYTES = 64 * 1024


def resolve_env(entry: ServerEntry, settings: Settings) -> dict[str, str]:
    """The server's ``env:`` with every reference replaced by its value."""
    return _resolve(entry, "env", entry.config.env, settings)


def resolve_headers(entry: ServerEntry, settings: Settings) -> dict[str, str]:
    """The remote server's ``headers:`` (upstream credentials) with references resolved."""
    headers = entry.config.headers if isinstance(entry.config, RemoteServer) else {}
    return _resolve(entry, "headers", headers, settings)


def _resolve(
    entry: ServerEntry, section: str, values: Mapping[str, SecretValue], settings: Settings
) -> dict[str, str]:
    resolved: dict[str, str] = {}
    problems: list[Problem] = []
    for key, value in values.items():
        try:
            resolved[key] = resolve_secret(value, settings)
        except ValueError as exc:
            problems.append(
                Problem(
                    entry.source,
                    str(exc),
                    key_path=f"mcp_servers.{entry.name}.{section}.{key}",
                    server=entry.name,
                )
            )
    if problems:
        raise ConfigError(problems)
    return resolved


def resolve_secret(value: SecretValue, settings: Settings) -> str:
    """One value with its reference resolved; ``ValueError`` says what is missing."""
    if isinstance(value, EnvRef):
        if value.env not in settings.environ:
            raise ValueError(f"environment variable {value.env} is not set")
        return settings.environ[value.env]
    if isinstance(value, FileRef):
        path = settings.project_dir / value.file
        try:
            with path.open("rb") as stream:
                data = stream.read(MAX_SECRET_FILE_BYTES + 1)
        except OSError as exc:
            raise ValueError(f"cannot read {value.file}: {exc.strerror}") from None
        if len(data) > MAX_SECRET_FILE_BYTES:
            raise ValueError(f"{value.file} is larger than {MAX_SECRET_FILE_BYTES} bytes")
        # A trailing newline is an editor's, not part of the secret.
        return data.decode("utf-8", errors="strict").rstrip("\r\n")
    return value
