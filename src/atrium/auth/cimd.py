"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP
authorization spec 2025-11-25, "Client ID Metadata Documents"): a client that never registered
uses as ``client_id`` the HTTPS URL of a JSON document with its RFC 7591 metadata.

:class:`ClientDocument` is the document, validated as a registration is (draft §4.1);
:class:`MetadataFetcher` fetches documents through ``safe_fetch`` (anyone can name the URL) and
caches them for their ``Cache-Control: max-age``, bounded. Failures are ``invalid_client``
naming the problem.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from atrium.auth.errors import OAuthError, invalid_client, shown
from atrium.auth.redirects import check_redirect
from atrium.auth.safe_fetch import FetchRefused, Resolve, SafeFetcher, system_resolve
from atrium.auth.uris import UriError, is_loopback, split_metadata_url

_SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
_STRING_FIELDS = (
    *("logo_uri", "client_uri", "tos_uri", "policy_uri", "jwks_uri"),
    *("client_name", "scope", "software_id", "software_version"),
)
_MIN_TTL_S = 60.0
# Anyone can make us fetch a document, so the cache must not grow without bound.
_MAX_CACHED = 1024


class ClientDocument(BaseModel):
    """A client metadata document (RFC 7591 §2 field names); validate it with
    ``context={"url": ..., "dev_mode": ...}``. Other RFC 7591 members are kept as extras."""

    model_config = ConfigDict(extra="allow", frozen=True)

    client_id: str
    application_type: Literal["native", "web"] = "native"
    redirect_uris: tuple[str, ...] = Field(min_length=1)
    # RFC 7591 §2: absent means the authorization code flow.
    grant_types: tuple[Literal["authorization_code", "refresh_token"], ...] = Field(
        default=("authorization_code",), min_length=1
    )
    response_types: tuple[Literal["code"], ...] = Field(default=("code",), min_length=1)
    token_endpoint_auth_method: Literal["none"] = "none"
    client_name: str | None = None
    scope: str | None = None
    logo_uri: str | None = None
    client_uri: str | None = None
    tos_uri: str | None = None
    policy_uri: str | None = None
    jwks_uri: str | None = None
    software_id: str | None = None
    software_version: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_shared_secret(cls, data: Any) -> Any:
        # Draft §4.1: a document is public, so it cannot carry or imply a shared secret.
        if isinstance(data, dict):
            for name in ("client_secret", "client_secret_expires_at"):
                if name in data:
                    raise ValueError(
                        f"the document contains {name}; shared secrets are not allowed"
                    )
            method = data.get("token_endpoint_auth_method")
            if isinstance(method, str) and method in _SECRET_METHODS:
                raise ValueError(f"token_endpoint_auth_method {method} needs a shared secret")
        return data

    @field_validator(*_STRING_FIELDS, mode="before")
    @classmethod
    def _string_when_present(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must be a string")
        return value

    @field_validator("client_id")
    @classmethod
    def _names_its_url(cls, value: str, info: ValidationInfo) -> str:
        # Draft §4.1: simple string comparison (RFC 3986 §6.2.1).
        if value != _context(info)["url"]:
            raise ValueError(f"'{shown(value)}' differs from the URL")
        return value

    @model_validator(mode="after")
    def _redirects_fit(self, info: ValidationInfo) -> ClientDocument:
        # A document is trusted no more than a registration (``redirects``; ports are checked
        # at the authorization endpoint, as every client's are).
        for uri in self.redirect_uris:
            try:
                check_redirect(uri, self.application_type, dev_mode=_context(info)["dev_mode"])
            except OAuthError as error:
                raise ValueError(f"redirect URI {error.description}") from None
        return self


class _Refused(Exception):
    """One reason to refuse a document; ``fetch`` prefixes it with the URL."""


def is_metadata_client_id(client_id: str, *, dev_mode: bool = False) -> bool:
    """Whether ``client_id`` names a metadata document rather than a registered client."""
    try:
        parts = split_metadata_url(client_id, allow_http=dev_mode)
    except UriError:
        return False
    return parts.scheme == "https" or is_loopback(parts.hostname or "")


def parse_document(url: str, body: bytes, *, dev_mode: bool = False) -> ClientDocument:
    """The document at ``url`` from its ``body``, or ``invalid_client`` naming the fault."""
    try:
        return _parse(url, body, dev_mode=dev_mode)
    except _Refused as exc:
        raise _refusal(url, str(exc)) from None


def _parse(url: str, body: bytes, *, dev_mode: bool) -> ClientDocument:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Refused("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _Refused("the body is not a JSON object")
    try:
        return ClientDocument.model_validate(data, context={"url": url, "dev_mode": dev_mode})
    except ValidationError as exc:
        raise _Refused(_first_problem(exc)) from None


def _context(info: ValidationInfo) -> dict[str, Any]:
    if not isinstance(info.context, dict):
        raise TypeError("validate a ClientDocument with context={'url': ..., 'dev_mode': ...}")
    return info.context


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "value_error":
        reason = str(error["ctx"]["error"])  # a sentence of our own validators
        return f"{where}: {reason}" if where else reason
    value = error["input"]
    given = f" '{shown(value)}'" if isinstance(value, str | int | float) else ""
    return f"{where or 'the document'}{given}: {error['msg']}"


class MetadataFetcher:
    """Fetches, validates and caches client metadata documents."""

    def __init__(
        self,
        *,
        dev_mode: bool = False,
        max_bytes: int = 5 * 1024,
        timeout_s: float = 5.0,
        default_ttl_s: float = 300.0,
        max_ttl_s: float = 86400.0,
        resolve: Resolve | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dev_mode = dev_mode
        self._http = SafeFetcher(
            allow_loopback=dev_mode,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            resolve=resolve or system_resolve,
        )
        self._default_ttl_s = default_ttl_s
        self._max_ttl_s = max_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[ClientDocument, float]] = {}
        self._inflight: dict[str, asyncio.Task[ClientDocument]] = {}

    async def fetch(self, client_id: str) -> ClientDocument:
        """The document at ``client_id``; concurrent callers share one request."""
        if (cached := self._cache.get(client_id)) and cached[1] > self._clock():
            return cached[0]
        task = self._inflight.get(client_id)
        if task is None:
            task = asyncio.create_task(self._fetch_and_cache(client_id))
            self._inflight[client_id] = task
            task.add_done_callback(lambda done: self._forget(client_id, done))
        # A caller that gives up must not cancel the request the others wait on.
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel fetches still under way and forget cached documents."""
        for task in self._inflight.values():
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        self._cache.clear()

    def _forget(self, client_id: str, task: asyncio.Task[ClientDocument]) -> None:
        if self._inflight.get(client_id) is task:
            del self._inflight[client_id]
        if not task.cancelled():
            task.exception()  # retrieved here so that a failure nobody awaited is not logged

    async def _fetch_and_cache(self, url: str) -> ClientDocument:
        try:
            split_metadata_url(url, allow_http=self._dev_mode)
            fetched = await self._http.get_json(url)
        except (UriError, FetchRefused) as exc:
            raise _refusal(url, str(exc)) from None
        document = parse_document(url, fetched.body, dev_mode=self._dev_mode)
        if (ttl := self._ttl(fetched.cache_control)) is not None:
            self._cache.pop(url, None)
            if len(self._cache) >= _MAX_CACHED:
                del self._cache[next(iter(self._cache))]  # the oldest
            self._cache[url] = (document, self._clock() + ttl)
        return document

    def _ttl(self, cache_control: str | None) -> float | None:
        """Seconds to keep a document (RFC 9111 §5.2.2), or None not to keep it."""
        directives = [part.strip().lower() for part in (cache_control or "").split(",")]
        if "no-store" in directives or "no-cache" in directives:
            return None
        ages = [d.partition("=")[2].strip('"') for d in directives if d.startswith("max-age=")]
        try:
            max_age = float(int(ages[0]))
        except (IndexError, ValueError):
            return self._default_ttl_s
        return min(max(max_age, _MIN_TTL_S), self._max_ttl_s)


def _refusal(url: str, problem: str) -> OAuthError:
    return invalid_client(f"client metadata document at {shown(url, 300)}: {problem}")
