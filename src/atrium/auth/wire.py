"""Reading OAuth requests and writing OAuth responses (RFC 6749 §3.2, §5).

Token-endpoint style requests are ``application/x-www-form-urlencoded`` POSTs with each
parameter at most once, and bodies are capped before they are read; responses are JSON with
``Cache-Control: no-store`` (§5.1).

A request carries at most one ``Authorization`` and one ``DPoP`` header, everywhere (the
gateway's MCP endpoint too): readers disagree on which of two wins (Starlette's
``headers.get`` answers the first, a dict built from the raw list the last), so two would let
one component authenticate a caller and another act for a different one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atrium.auth.errors import OAuthError, invalid_request

MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 6750 §2 (one method of presenting a token), RFC 9449 §4.3 step 1 (one proof).
SINGLE_HEADERS = (b"authorization", b"dpop")

Endpoint = Callable[[Request], Awaitable[Response]]


def repeated_credential(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The name of a credential header that ``headers`` (ASGI's raw list) repeat, or None."""
    seen: set[bytes] = set()
    for name, _ in headers:
        name = name.lower()
        if name in SINGLE_HEADERS:
            if name in seen:
                return name.decode("latin-1")
            seen.add(name)
    return None


def check_single_credentials(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Raise ``invalid_request`` if a credential header appears more than once."""
    name = repeated_credential(headers)
    if name is not None:
        raise invalid_request(f"the {name} header appears more than once; send it once")


def single_credentials(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, answering 400 ``invalid_request`` to a repeated credential header
    before it reads anything of the request."""

    async def checked(request: Request) -> Response:
        try:
            check_single_credentials(request.scope["headers"])
        except OAuthError as error:
            return oauth_error_response(error)
        return await endpoint(request)

    return checked


def oauth_error_response(error: OAuthError) -> JSONResponse:
    headers = {**NO_STORE, **error.headers}
    if error.status == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = 'Basic realm="atrium"'
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def token_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, headers={**NO_STORE, **(headers or {})})


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise invalid_request(f"the request body must be at most {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise invalid_request(f"the request body must be at most {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> dict[str, str]:
    """The form parameters; a repeated one is ``invalid_request`` (RFC 6749 §3.2).

    ``resource`` may repeat (RFC 8707 §2): it is returned joined by spaces under its name.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise invalid_request("the body must be application/x-www-form-urlencoded")
    from urllib.parse import parse_qsl

    raw = await _body(request)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise invalid_request("the body is not UTF-8") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            if name != "resource":
                raise invalid_request(f"parameter {name!r} is repeated")
            form[name] = f"{form[name]} {value}"
        else:
            form[name] = value
    return form


async def read_json(request: Request) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise invalid_request("the body must be application/json")
    try:
        return orjson.loads(await _body(request))
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"the body is not valid JSON ({exc})") from None
