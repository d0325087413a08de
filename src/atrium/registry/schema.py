"""The YAML schema of a hosted MCP server (``services/mcp/<name>.yaml``).

The seed fields come first (``binary``, ``package``, ``port``, ``endpoint``, ``enabled``,
``display_in_web``, ``description``, ``oauth``, ``tools``), then ours (``transport``,
``command``, ``env``, ``url``, ``headers``, ``rate_limit``, ``timeout_s``, ``backend``). An entry
is one of three models picked by ``transport`` (``HttpServer``, ``StdioServer``,
``RemoteServer``): only hosted servers have a ``port`` (and maybe a ``backend`` on another
host), only remote ones a ``url``. Models are frozen and reject unknown
keys; checks that need the project's settings (the port range) or other files (duplicates) live
in ``atrium.registry.loader``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python

from atrium.registry.globs import validate_glob
from atrium.registry.references import ENV_NAME, EnvValue, SecretValue, no_shell_reference
from atrium.registry.references import EnvRef as EnvRef  # re-exported: the registry's users'
from atrium.registry.references import FileRef as FileRef
from atrium.settings.sections import RATE_LIMIT

# Names appear in URLs (/api/v1/mcp/{name}/mcp) and in namespaced tool names (mcp__{name}__tool).
SERVER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
# RFC 1123 §2.1 host names: dot-separated labels of letters, digits and inner hyphens.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
Transport = Literal["http", "stdio", "remote"]
DpopMode = Literal["off", "optional", "required"]
Scope = Annotated[str, StringConstraints(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$")]  # RFC 6749 §3.3


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OAuthPolicy(_Model):
    required: bool = False
    scopes: tuple[Scope, ...] = ()
    audience: str | None = None
    client_id: str | None = None
    dpop: DpopMode = "optional"
    # Local development only (the seeds' "disable OAuth for local development"): where
    # ``required`` is false and ``tools.public`` unset, callers without a token may call every
    # allowed tool instead of the read-only ones. The gateway and the CLI warn about it.
    # Unrelated to ``oauth.dev_mode`` of atrium.yaml (the authorization server's).
    dev_mode: bool = False

    @model_validator(mode="after")
    def _dev_mode_is_open(self) -> OAuthPolicy:
        if self.dev_mode and self.required:
            raise ValueError(
                "dev_mode opens the server to callers without a token; it contradicts"
                " required: true (drop dev_mode outside local development)"
            )
        return self


def _glob(pattern: str) -> str:
    validate_glob(pattern)
    return pattern


Glob = Annotated[str, AfterValidator(_glob)]


class ToolPolicy(_Model):
    """Which tools the gateway lets through; globs over tool names (``*``, ``?``, ``[...]``)."""

    allowed: tuple[Glob, ...] = ("*",)
    denied: tuple[Glob, ...] = ()
    # The public tools: what callers without a token may call (and tokens that reach no
    # further, e.g. only ``anonymous``; atrium.gateway.access). Unset, they are the tools
    # annotated ``readOnlyHint`` where ``oauth.required`` is false (every allowed tool with
    # ``oauth.dev_mode``) and none where it is true; set, exactly the tools these globs match.
    public: tuple[Glob, ...] | None = None
    scopes: dict[Glob, tuple[Scope, ...]] = Field(default_factory=dict)


class _Server(_Model):
    """What every entry of ``mcp_servers:`` has, whatever its transport."""

    binary: str | None = Field(default=None, min_length=1)
    package: str | None = Field(default=None, min_length=1)
    endpoint: str | None = None
    enabled: bool = True
    display_in_web: bool = True
    description: str = ""
    oauth: OAuthPolicy = OAuthPolicy()
    tools: ToolPolicy = ToolPolicy()
    env: dict[str, EnvValue] = Field(default_factory=dict)
    rate_limit: str | None = None
    timeout_s: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _checked_url(value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, Any]) -> dict[str, Any]:
        for name in env:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return env

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None and not RATE_LIMIT.match(value):
            raise ValueError(f"{value!r} is not a rate like 60/minute or 1000/day")
        return value

    def env_references(self) -> list[tuple[str, str]]:
        """``(key path, variable)`` for every ``$env`` reference in ``env`` and ``headers``."""
        found = []
        for section in ("env", "headers"):
            values: dict[str, SecretValue] = getattr(self, section, {})
            for key, value in values.items():
                if isinstance(value, EnvRef):
                    found.append((f"{section}.{key}", value.env))
        return found

    def to_json(self) -> dict[str, Any]:
        """The plain-JSON form stored in the database and written back to YAML."""
        return self.model_dump(mode="json", by_alias=True)


class Backend(_Model):
    """``backend:``, where the gateway reaches a hosted server that runs on another host.

    Without it the gateway connects to ``gateway.backend_host`` (loopback by default) and this
    host's supervisor runs the server on loopback. With it, the supervisor of the host that
    ``host`` names runs it, listening on that address (``atrium.supervisor.placement``); any
    other host's supervisor leaves it alone, and so may systemd or Kubernetes run it instead.
    """

    host: str
    # Where the gateway connects, when not the server's own ``port`` (a Kubernetes Service, a
    # forwarder); the process still listens on ``port``.
    port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return checked_backend_host(value)


def checked_backend_host(value: str) -> str:
    """A host name or IP address the gateway can connect to, or ``ValueError``."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        name = HOST_NAME.fullmatch(value) and len(value.rstrip(".")) <= 253
        if not name or value.replace(".", "").isdigit():
            raise ValueError(
                f"{value!r} is not a host name or IP address; give the host alone, without"
                " scheme, port or path (e.g. mcp-1.internal or 10.0.0.7)"
            ) from None
        return value.rstrip(".").lower()
    if address.is_unspecified:
        raise ValueError(f"{value!r} is a wildcard; name the host the gateway connects to")
    return str(address)


class _Hosted(_Server):
    """A server Atrium runs itself, on a port of its own."""

    port: int = Field(ge=1, le=65535)
    command: tuple[str, ...] | None = None
    backend: Backend | None = None

    @field_validator("command")
    @classmethod
    def _non_empty_command(cls, command: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if command is not None and (not command or not command[0]):
            raise ValueError("must name a program to run, e.g. [npx, -y, some-package]")
        for part in command or ():
            no_shell_reference(part, in_command=True)
        return command


class HttpServer(_Hosted):
    """``transport: http`` (the default): a program that serves Streamable HTTP on ``port``."""

    transport: Literal["http"] = "http"


class StdioServer(_Hosted):
    """``transport: stdio``: a program speaking MCP on stdin/stdout, bridged to HTTP on ``port``."""

    transport: Literal["stdio"]
    command: tuple[str, ...]


class RemoteServer(_Server):
    """``transport: remote``: a server elsewhere, reached at ``url``; nothing to start."""

    transport: Literal["remote"]
    url: str
    headers: dict[str, SecretValue] = Field(default_factory=dict)
    # A remote server gets the gateway's signed caller assertion (who calls) only when asked:
    # identities never leak to a third party by default. Hosted servers always get it.
    forward_identity: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _checked_url(value)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, Any]) -> dict[str, Any]:
        for name in headers:
            if not HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
        return headers


def _checked_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


TRANSPORTS: dict[str, type[HttpServer | StdioServer | RemoteServer]] = {
    "http": HttpServer,
    "stdio": StdioServer,
    "remote": RemoteServer,
}
_REMOTE_ONLY = ("url", "headers", "forward_identity")


def _transport_of(value: Any) -> str | None:
    if isinstance(value, dict):
        transport = value.get("transport", "http")
        return transport if transport in TRANSPORTS else None
    # Not a mapping: the default model says what was expected.
    return getattr(value, "transport", "http")


def _transport_needs(value: Any) -> Any:
    """The rules that tie keys to a transport, said in the YAML's terms before the union picks
    a model (its own errors would name a missing field of a model the user never wrote). Keys
    of another transport left at their empty value (the stored form of earlier versions wrote
    them all) are dropped."""
    if not isinstance(value, dict) or _transport_of(value) is None:
        return value
    transport = value.get("transport", "http")
    if transport == "http" and not (value.get("binary") or value.get("command")):
        raise ValueError("transport 'http' needs 'binary' (or 'command') to start the server")
    if transport == "stdio" and not value.get("command"):
        raise ValueError("transport 'stdio' needs 'command', e.g. [uvx, mcp-server-time]")
    if transport == "remote":
        if not value.get("url"):
            raise ValueError("transport 'remote' needs 'url'")
        foreign: tuple[str, ...] = ("port", "command", "backend")
    else:
        if value.get("port") is None:
            raise ValueError(f"transport '{transport}' needs 'port'")
        foreign = _REMOTE_ONLY
    value = {k: v for k, v in value.items() if not (k in foreign and _empty(v))}
    for key in foreign:
        if key in value:
            raise ValueError(_foreign(key, transport))
    return value


def _empty(value: Any) -> bool:
    return value is None or value is False or value == {}


def _foreign(key: str, transport: str) -> str:
    if transport == "remote" and key == "backend":
        return "'backend' is not for transport 'remote' (its 'url' says where it is)"
    if transport == "remote":
        return f"'{key}' is not for transport 'remote' (Atrium starts nothing for it)"
    why = " (hosted servers always get the caller assertion)" * (key == "forward_identity")
    return f"'{key}' is only for transport 'remote'{why}"


# One entry of ``mcp_servers:``: a model per transport, picked by ``transport`` (default http),
# so a remote server has no port and a hosted one no url.
ServerConfig = Annotated[
    Annotated[HttpServer, Tag("http")]
    | Annotated[StdioServer, Tag("stdio")]
    | Annotated[RemoteServer, Tag("remote")],
    Discriminator(
        _transport_of,
        custom_error_type="transport",
        custom_error_message="transport must be 'http', 'stdio' or 'remote'",
    ),
    BeforeValidator(_transport_needs),
]
_SERVER_CONFIG: TypeAdapter[ServerConfig] = TypeAdapter(ServerConfig)


def parse_server_config(data: Any) -> ServerConfig:
    """One entry of ``mcp_servers:`` (YAML or its stored JSON form) as its transport's model."""
    return _SERVER_CONFIG.validate_python(data)


def default_form(transport: str) -> dict[str, Any]:
    """The stored (JSON) form of every key with a default, for a server of ``transport``."""
    model = TRANSPORTS.get(transport, HttpServer)
    fields = model.model_fields.items()
    values = {
        field.alias or name: field.get_default(call_default_factory=True)
        for name, field in fields
        if not field.is_required()
    }
    form: dict[str, Any] = to_jsonable_python(values, by_alias=True)
    return form


def port_of(config: ServerConfig) -> int | None:
    """The port Atrium runs ``config`` on; ``None`` for a remote server."""
    return None if isinstance(config, RemoteServer) else config.port


# Path segments the gateway serves itself under /api/v1/mcp/.
RESERVED_NAMES = frozenset({"registry"})


def checked_name(name: str, what: str) -> str:
    """``name`` in the server names' alphabet (URLs, tool names), or ``ValueError``."""
    if not SERVER_NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} must be lowercase letters, digits and '-' (at most 64),"
            " starting and ending with a letter or digit"
        )
    return name


def _server_name(name: str) -> str:
    if name in RESERVED_NAMES:
        raise ValueError(f"server name {name!r} is reserved (/api/v1/mcp/{name} is the gateway's)")
    return checked_name(name, "server")


ServerName = Annotated[str, AfterValidator(_server_name)]


class ServersFile(_Model):
    """A whole ``services/mcp/*.yaml`` file."""

    mcp_servers: dict[ServerName, ServerConfig]


class ExtensionSpec(_Model):
    """``extension:`` in ``extensions/mcp/<name>/manifest.yaml`` (seed 002)."""

    type: Literal["mcp"]
    name: str = Field(pattern=SERVER_NAME.pattern)
    binary: str = Field(min_length=1)
    description: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    build_type: Literal["workspace", "python", "external"] = "workspace"
    # ``external`` only: the program and its arguments, run in the extension's folder, no shell.
    build_command: tuple[Annotated[str, StringConstraints(min_length=1)], ...] | None = None
    enabled: bool = True


class ManifestFile(_Model):
    extension: ExtensionSpec
