"""Reading OAuth requests and writing OAuth responses (RFC 6749 §3.2, §5).

Token-endpoint style requests are ``application/x-www-form-urlencoded`` POSTs with each
parameter at most once; responses are JSON with ``Cache-Control: no-store`` (§5.1).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

from atrium.auth.errors import OAuthError, invalid_request

MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


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
