"""The schema of ``atrium.yaml``: one pydantic model per section, every key optional.

``atrium.settings`` reads the file against ``SettingsFile`` and resolves it, with the
``ATRIUM_*`` overrides, into the frozen ``Settings``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What limits.parse reads as one rate (ASCII digits and spaces only), minus what it reads
# wrongly: a zero count (every call refused), a zero period ("1/0 minutes" is 1/minute to it).
RATE_LIMIT = re.compile(
    r"^ *[1-9][0-9]* *(?:/|per) *(?:[1-9][0-9]* *)?(?:second|minute|hour|day|month|year)s? *$"
)

LogLevel = Literal["debug", "info", "warning", "error"]
FailMode = Literal["open", "closed"]
Workers = int | Literal["auto"]
MAX_WORKERS = 1024


def parse_workers(value: object) -> Workers:
    """``gateway.workers``: a whole number of processes, or ``auto`` (one per usable CPU)."""
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    raise ValueError(f"must be a whole number from 1 to {MAX_WORKERS}, or auto")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    # DNS-rebinding guard (MCP spec, "Security Warning" of Streamable HTTP): Host and Origin
    # values accepted besides the loopback names and the public URL's own.
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Messages one POST may carry (JSON-RPC 2.0 §6 batches): each is policy-checked, rate
    # counted and audited, so an unbounded batch is unbounded work for one request.
    max_batch: int = Field(default=50, ge=1)
    # Where hosted backends listen: loopback on one host, a service name when scaled out.
    backend_host: str = "127.0.0.1"
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or CIDRs).
    # Empty: none, so a client's address is always the TCP peer's (the sign-in throttle, the
    # registration limit and anonymous rate limits count per address; any local process could
    # otherwise name itself any address).
    trusted_proxies: tuple[str, ...] = ()
    # Slow clients (issue 18 item 8): a request's head must arrive within header_timeout_s of
    # its first byte (or of the connection); a body may go body_timeout_s without a byte; an
    # idle kept-alive connection is closed after keep_alive_timeout_s. Answers are never cut.
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    keep_alive_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    # On shutdown, calls in flight get this long to finish; then each gets a JSON-RPC error.
    shutdown_grace_s: float = Field(default=10.0, gt=0, le=3600)
    # Behind a load balancer: on SIGTERM, /health answers 503 and every other request is still
    # served for drain_s, so the balancer stops sending new calls before the port closes (a
    # call it sent to a closing port could not be resent safely). 0: stop at once.
    drain_s: float = Field(default=0.0, ge=0, le=600)
    # How often the gateway reads the registry, revocations and keys from the store: the
    # fallback for what PostgreSQL announces at once (atrium.store.changes), the only way on
    # SQLite for what `atrium admin` does not tell the gateway of `atrium start` directly.
    poll_s: float = Field(default=2.0, ge=0.05, le=3600)
    # The ``replica`` label of this gateway's metrics; unset, ``<hostname>:<pid>``.
    replica_id: str | None = None
    # Gateway processes serving the port (atrium.gateway.workers); auto: one per usable CPU.
    # More than one needs redis.url: the rate limits and replay cache must be shared.
    workers: Workers = 1

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> Workers:
        return parse_workers(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Normalised, because uvicorn silently treats what it cannot parse (10.0.0.1/8 with
        # host bits set, say) as a literal name that no address ever matches.
        try:
            return tuple(
                str(ipaddress.ip_network(entry, strict=False))
                if "/" in entry
                else str(ipaddress.ip_address(entry))
                for entry in value
            )
        except ValueError as exc:
            raise ValueError(f"not an IP address or CIDR network ({exc})") from None

    @field_validator("replica_id")
    @classmethod
    def _label_value(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]{1,128}", value):
            raise ValueError("must be 1 to 128 printable ASCII characters, without spaces")
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


class McpSection(_Section):
    port_range: tuple[int, int] = (5000, 5999)

    @field_validator("port_range", mode="before")
    @classmethod
    def _parse_range(cls, value: Any) -> Any:
        if isinstance(value, str):
            low, sep, high = value.partition("-")
            if not sep or not low.strip().isdigit() or not high.strip().isdigit():
                raise ValueError("must look like 5000-5999")
            return (int(low), int(high))
        return value

    # A field validator, not a model validator: the error's key path must be mcp.port_range so
    # that it is blamed on ATRIUM_PORT_RANGE when that variable set it.
    @field_validator("port_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not (1 <= low <= high <= 65535):
            raise ValueError(f"port_range {low}-{high} must satisfy 1 <= start <= end <= 65535")
        return value


class StoreSection(_Section):
    url: str | None = None
    schema_: str | None = Field(default=None, alias="schema")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value


class OAuthSection(_Section):
    """The authorization server (``atrium.auth``): lifetimes, limits and roles."""

    issuer: str | None = None
    access_token_ttl_s: int = Field(default=3600, ge=60, le=86400)
    refresh_token_ttl_s: int = Field(default=30 * 86400, ge=3600)
    # Dynamic registration (RFC 7591) is open to anyone: cap it, and forget clients that
    # registered but never obtained a token.
    max_dynamic_clients: int = Field(default=1000, ge=1)
    unused_client_ttl_s: int = Field(default=86400, ge=60)
    # Registrations each client address may make (the TCP peer, or the address a trusted
    # proxy names), so that one source cannot fill the cap above by itself.
    registrations_per_address: str = "20/hour"
    # Failed sign-ins before the form stops checking passwords (atrium.auth.throttle): per
    # client address, and per user name (keep it above twice the former, so that no single
    # address can lock a user out).
    signin_failures_per_address: str = "10/minute"
    signin_failures_per_user: str = "30/minute"
    # Development only: Client ID Metadata Documents on loopback http:// URLs.
    dev_mode: bool = False
    # RFC 9449 §8/§9: make clients sign a server-chosen nonce into their DPoP proofs.
    dpop_nonce: bool = False
    # Where a token requested without RFC 8707 ``resource`` is meant for (servers whose
    # ``oauth.audience`` names it accept it).
    default_audience: str = "mcp"
    # Custom roles: role name -> the scopes it grants (built-in roles are in atrium.auth.roles).
    roles: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator(
        "registrations_per_address", "signin_failures_per_address", "signin_failures_per_user"
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        if not RATE_LIMIT.match(value):
            raise ValueError(f"{value!r} is not a rate like 20/hour")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        # RFC 8414 §2: an https URL with no query or fragment (http is for local use).
        if value is not None and (
            not value.startswith(("http://", "https://")) or "?" in value or "#" in value
        ):
            raise ValueError("must be an http(s) URL without query or fragment")
        return value


class RedisFailModes(_Section):
    """What the rate limiter does with a tool call while Redis cannot count it.

    Open lets the call through uncounted, closed refuses it (503). Signed-in callers are
    accountable and keep working through an outage; anonymous ones are whom limits are for.
    """

    authenticated: FailMode = "open"
    anonymous: FailMode = "closed"


class RateLimitSection(_Section):
    """Limits on tool calls (``atrium.gateway.ratelimit``), per caller and server.

    ``default`` applies to servers without their own ``rate_limit`` (None: no limit there);
    ``per_tool`` gives each tool its own budget instead of one per server. Counters live in
    Redis when ``redis.url`` is set (shared by every replica), else in the process.
    """

    default: str | None = None
    per_tool: bool = False
    on_redis_error: RedisFailModes = RedisFailModes()

    @field_validator("default")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None and not RATE_LIMIT.match(value):
            raise ValueError(f"{value!r} is not a rate like 60/minute or 1000/day")
        return value


class RedisSection(_Section):
    """Shared short-lived state of scaled-out replicas: rate-limit counters, DPoP ``jti``s,
    the sign-in and registration throttles' counters.

    Its own section, not the rate limiter's: the replay cache (and later registry notices)
    use the same server. ``key_prefix`` keeps deployments that share one Redis apart.
    """

    url: str | None = None
    key_prefix: str = Field(default="atrium", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # Redis answers in well under a millisecond: a slow one must not hold requests up long.
    timeout_s: float = Field(default=0.5, gt=0, le=30)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class LoggingSection(_Section):
    level: LogLevel = "info"


class SettingsFile(_Section):
    """The schema of ``atrium.yaml``; every section and key is optional."""

    gateway: GatewaySection = GatewaySection()
    mcp: McpSection = McpSection()
    store: StoreSection = StoreSection()
    oauth: OAuthSection = OAuthSection()
    ratelimit: RateLimitSection = RateLimitSection()
    redis: RedisSection = RedisSection()
    logging: LoggingSection = LoggingSection()
