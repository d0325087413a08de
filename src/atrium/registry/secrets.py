"""Resolving ``$env``, ``$file`` and ``$secret`` references when a server starts.

References stay unresolved in the YAML and the store, so no secret is ever written there. At
load time an unset variable is only a warning (the server may never be started here); at start
it is an error that names the file, the server and the key, and nothing is started.

``{$secret: NAME}`` (a hosted server's ``env:`` only) is the project's secret ``NAME``: the one
an admin stored with the marketplace's ``manage_secrets`` at scope ``project`` (owner
``atrium.store.PROJECT_OWNER``), never a user's own. ``stored_secrets`` reads them from the
store before the supervisor starts the process; ``resolve_env`` takes what it read.
"""

from __future__ import annotations

from collections.abc import Mapping

from atrium.errors import AtriumError, ConfigError, Problem
from atrium.registry.loader import ServerEntry
from atrium.registry.references import EnvRef, EnvValue, FileRef, SecretRef, SecretValue
from atrium.registry.schema import RemoteServer
from atrium.secretbox import SecretBox
from atrium.settings import Settings
from atrium.store import PROJECT_OWNER, Store

MAX_SECRET_FILE_BYTES = 64 * 1024


def resolve_env(
    entry: ServerEntry, settings: Settings, secrets: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server's ``env:`` with every reference replaced by its value; ``secrets`` are the
    stored secrets it names, by name (``stored_secrets``)."""
    return _resolve(entry, "env", entry.config.env, settings, secrets or {})


async def stored_secrets(entry: ServerEntry, settings: Settings) -> dict[str, str]:
    """The values of the project secrets the server's ``env:`` names, by name; the store is
    opened only when there are some. One that is not stored is left out (``resolve_env``
    names it with its key); one that cannot be read is a ``ConfigError`` naming the server."""
    names = {v.secret for v in entry.config.env.values() if isinstance(v, SecretRef)}
    if not names:
        return {}
    try:
        box = SecretBox.load(settings)
        async with await Store.open(settings) as store:
            return await store.secrets.reveal(PROJECT_OWNER, names, box=box)
    except AtriumError as exc:
        where = f"mcp_servers.{entry.name}.env"
        message = f"cannot read its stored secrets ({', '.join(sorted(names))}): {exc}"
        problem = Problem(entry.source, message, key_path=where, server=entry.name)
        raise ConfigError([problem]) from exc


def resolve_headers(entry: ServerEntry, settings: Settings) -> dict[str, str]:
    """The remote server's ``headers:`` (upstream credentials) with references resolved."""
    headers = entry.config.headers if isinstance(entry.config, RemoteServer) else {}
    return _resolve(entry, "headers", headers, settings)


def _resolve(
    entry: ServerEntry,
    section: str,
    values: Mapping[str, EnvValue],
    settings: Settings,
    secrets: Mapping[str, str] | None = None,
) -> dict[str, str]:
    resolved: dict[str, str] = {}
    problems: list[Problem] = []
    for key, value in values.items():
        try:
            if isinstance(value, SecretRef):
                resolved[key] = _stored(value, secrets or {})
            else:
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


def _stored(reference: SecretRef, secrets: Mapping[str, str]) -> str:
    if reference.secret not in secrets:
        raise ValueError(
            f"secret {reference.secret} is not stored: an admin sets it with the marketplace's"
            f" manage_secrets (action 'set', scope 'project', name '{reference.secret}')"
        )
    return secrets[reference.secret]
