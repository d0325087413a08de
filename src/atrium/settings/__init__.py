"""The one ``Settings`` object: ``atrium.yaml`` in the project folder plus ``ATRIUM_*`` overrides.

Built once at the edge (the CLI, a test) by ``load_settings`` and passed down. This is the only
module that reads the process environment: it keeps a snapshot in ``Settings.environ`` for the
``$env`` references of server YAML, so nothing else needs ``os.environ``.

Precedence, highest first: an ``ATRIUM_*`` variable, ``atrium.yaml``, the defaults below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from atrium import yamlio
from atrium.errors import ConfigError, Problem
from atrium.settings.sections import (
    LogLevel,
    OAuthSection,
    RateLimitSection,
    RedisSection,
    SettingsFile,
    Workers,
)

SETTINGS_FILE = "atrium.yaml"
STATE_DIR = ".atrium"

# Each override names the variable and the key path it replaces in atrium.yaml.
ENV_OVERRIDES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ATRIUM_GATEWAY_HOST": ("gateway", "host"),
        "ATRIUM_GATEWAY_PORT": ("gateway", "port"),
        "ATRIUM_PUBLIC_URL": ("gateway", "public_url"),
        "ATRIUM_PORT_RANGE": ("mcp", "port_range"),
        "ATRIUM_DATABASE_URL": ("store", "url"),
        "ATRIUM_DATABASE_SCHEMA": ("store", "schema"),
        "ATRIUM_ISSUER": ("oauth", "issuer"),
        "ATRIUM_OAUTH_DEV_MODE": ("oauth", "dev_mode"),
        "ATRIUM_LOG_LEVEL": ("logging", "level"),
        "ATRIUM_REDIS_URL": ("redis", "url"),
        "ATRIUM_REPLICA_ID": ("gateway", "replica_id"),
        "ATRIUM_GATEWAY_WORKERS": ("gateway", "workers"),
        "ATRIUM_GATEWAY_DRAIN_S": ("gateway", "drain_s"),
    }
)


@dataclass(frozen=True)
class Settings:
    """Everything Atrium is configured with, resolved to final values."""

    project_dir: Path
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    public_url: str = "http://localhost:8080"
    port_range: tuple[int, int] = (5000, 5999)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    max_batch: int = 50
    backend_host: str = "127.0.0.1"
    trusted_proxies: tuple[str, ...] = ()
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 5.0
    shutdown_grace_s: float = 10.0
    drain_s: float = 0.0
    poll_s: float = 2.0
    replica_id: str | None = None
    gateway_workers: Workers = 1
    database_url: str = ""
    database_schema: str | None = None
    issuer: str = "http://localhost:8080"
    oauth: OAuthSection = field(default_factory=OAuthSection)
    ratelimit: RateLimitSection = field(default_factory=RateLimitSection)
    redis: RedisSection = field(default_factory=RedisSection)
    log_level: LogLevel = "info"
    environ: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def state_dir(self) -> Path:
        return self.project_dir / STATE_DIR

    @property
    def mcp_dir(self) -> Path:
        return self.project_dir / "services" / "mcp"

    @property
    def extensions_dir(self) -> Path:
        return self.project_dir / "extensions" / "mcp"

    @property
    def logs_dir(self) -> Path:
        return self.project_dir / "logs"

    @property
    def settings_file(self) -> Path:
        return self.project_dir / SETTINGS_FILE

    @property
    def oauth_base(self) -> str:
        """Where the authorization server's endpoints live."""
        return f"{self.issuer}/api/v1/core/oauth"

    def endpoint_for(self, server: str) -> str:
        """The public URL a client uses for ``server`` through the gateway."""
        return f"{self.public_url}/api/v1/mcp/{server}/mcp"


def project_dir_from(option: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """``--project DIR``, else ``ATRIUM_PROJECT``, else the current folder."""
    env = os.environ if environ is None else environ
    if option is not None:
        return option.expanduser().resolve()
    if env.get("ATRIUM_PROJECT"):
        return Path(env["ATRIUM_PROJECT"]).expanduser().resolve()
    return Path.cwd().resolve()


SERVER_PORT_VARIABLE = "ATRIUM_SERVER_PORT"
SUPERVISOR_VARIABLE = "ATRIUM_SUPERVISOR"


def supervised(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by Atrium's supervisor (which sets the variable)."""
    env = os.environ if environ is None else environ
    return bool(env.get(SUPERVISOR_VARIABLE))


def server_port_from_env(environ: Mapping[str, str] | None = None) -> int | None:
    """``ATRIUM_SERVER_PORT``, the port the supervisor gave an MCP server process, or None.

    Raises ``ConfigError`` when it is set to something that is not a port.
    """
    env = os.environ if environ is None else environ
    value = env.get(SERVER_PORT_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        problem = Problem(
            f"environment variable {SERVER_PORT_VARIABLE}", f"{value!r} is not a port"
        )
        raise ConfigError([problem])
    return int(value)


CALLER_KEYS_VARIABLE = "ATRIUM_CALLER_KEYS"
SERVER_NAME_VARIABLE = "ATRIUM_SERVER_NAME"


def caller_keys_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """``ATRIUM_CALLER_KEYS``: the gateway's public caller-assertion keys a backend checks
    requests with (the supervisor sets it; ``atrium.auth.assertion``), or None."""
    env = os.environ if environ is None else environ
    value = env.get(CALLER_KEYS_VARIABLE, "").strip()
    return Path(value).expanduser() if value else None


def server_name_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``ATRIUM_SERVER_NAME``: the registry name the supervisor started this server as."""
    env = os.environ if environ is None else environ
    return env.get(SERVER_NAME_VARIABLE, "").strip() or None


ACTING_CALLER_VARIABLE = "ATRIUM_ACTING_CALLER"


def acting_caller_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``ATRIUM_ACTING_CALLER``: the caller a CLI run by the ``atrium`` server's tool acts for
    (``atrium.auth.operator``), as that server wrote it; None when an operator runs the CLI."""
    env = os.environ if environ is None else environ
    return env.get(ACTING_CALLER_VARIABLE) or None


def load_settings(
    project_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the frozen ``Settings``; raise ``ConfigError`` naming the file or variable at fault."""
    env = dict(os.environ if environ is None else environ)
    root = project_dir_from(project_dir, env)
    raw, document = _read_file(root / SETTINGS_FILE)
    origins: dict[tuple[str, ...], str] = {}
    for name, path in ENV_OVERRIDES.items():
        if name in env:
            section = raw.setdefault(path[0], {})
            if not isinstance(section, dict):
                section = raw[path[0]] = {}
            section[path[1]] = env[name]
            origins[path] = name
    try:
        parsed = SettingsFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, document, origins)) from None
    return _resolve(root, parsed, env)


def _read_file(path: Path) -> tuple[dict[str, Any], Any]:
    if not path.exists():
        return {}, None
    try:
        document = yamlio.load(path, SETTINGS_FILE) if path.stat().st_size else None
    except yamlio.YamlSyntaxError as exc:
        raise ConfigError([exc.problem]) from None
    if document is None:
        return {}, None
    if not isinstance(document, dict):
        raise ConfigError([Problem(SETTINGS_FILE, "the top level must be a mapping")])
    # A section whose keys are all commented out (as in the scaffold's atrium.yaml) is null.
    return {
        k: dict(v) if isinstance(v, dict) else {} if v is None else v for k, v in document.items()
    }, document


def _problems(
    exc: ValidationError, document: Any, origins: Mapping[tuple[str, ...], str]
) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        variable = origins.get(loc[:2])
        if variable is not None:
            problems.append(Problem(f"environment variable {variable}", error["msg"]))
            continue
        where = yamlio.position(document, loc) if document is not None else None
        problems.append(
            Problem(
                SETTINGS_FILE,
                error["msg"],
                key_path=yamlio.key_path(error["loc"]),
                line=where[0] if where else None,
                column=where[1] if where else None,
            )
        )
    return problems


def _resolve(root: Path, parsed: SettingsFile, env: Mapping[str, str]) -> Settings:
    gateway = parsed.gateway
    public_url = gateway.public_url or f"http://localhost:{gateway.port}"
    return Settings(
        project_dir=root,
        gateway_host=gateway.host,
        gateway_port=gateway.port,
        public_url=public_url,
        port_range=parsed.mcp.port_range,
        allowed_hosts=gateway.allowed_hosts,
        allowed_origins=gateway.allowed_origins,
        max_body_bytes=gateway.max_body_bytes,
        max_batch=gateway.max_batch,
        backend_host=gateway.backend_host,
        trusted_proxies=gateway.trusted_proxies,
        header_timeout_s=gateway.header_timeout_s,
        body_timeout_s=gateway.body_timeout_s,
        keep_alive_timeout_s=gateway.keep_alive_timeout_s,
        shutdown_grace_s=gateway.shutdown_grace_s,
        drain_s=gateway.drain_s,
        poll_s=gateway.poll_s,
        replica_id=gateway.replica_id,
        gateway_workers=gateway.workers,
        database_url=_database_url(root, parsed.store.url),
        database_schema=parsed.store.schema_,
        issuer=(parsed.oauth.issuer or public_url).rstrip("/"),
        oauth=parsed.oauth,
        ratelimit=parsed.ratelimit,
        redis=parsed.redis,
        log_level=parsed.logging.level,
        environ=MappingProxyType(dict(env)),
    )


def _database_url(root: Path, url: str | None) -> str:
    """Normalise to an async SQLAlchemy URL; SQLite in ``.atrium/atrium.db`` by default."""
    if url is None:
        return f"sqlite+aiosqlite:///{root / STATE_DIR / 'atrium.db'}"
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url
