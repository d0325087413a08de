"""Signing in to a remote MCP server that asks for OAuth: the ``mcp`` SDK's client flow.

``oauth_for(spec, folder, open_browser)`` is the SDK's ``OAuthClientProvider`` for one server: on
a 401 it discovers the authorization server (RFC 9728, RFC 8414), registers (RFC 7591) and
sends the person to the browser; the authorization code comes back to a listener on a loopback
port (RFC 8252 §7.3) that is open only while a sign-in waits. The registration and the tokens
are kept in one file per server URL, mode 0600 in a 0700 folder, so later runs sign in only
when the refresh token no longer works.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from atrium.client.mcpjson import HttpTarget, ServerSpec
from atrium.errors import AtriumError

SIGN_IN_TIMEOUT_S = 300.0
_PAGE = b"Signed in. You can close this window and return to the terminal.\n"


class SignInFailed(AtriumError):
    pass


class FileTokenStorage:
    """The SDK's ``TokenStorage`` in a private JSON file: registration and tokens."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def get_tokens(self) -> OAuthToken | None:
        found = self._load().get("tokens")
        return OAuthToken.model_validate(found) if found else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self._save("tokens", tokens.model_dump(mode="json", exclude_none=True))

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        found = self._load().get("client")
        return OAuthClientInformationFull.model_validate(found) if found else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self._save("client", client_info.model_dump(mode="json", exclude_none=True))

    def _load(self) -> dict[str, Any]:
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # nothing kept yet, or unreadable: sign in again
        return value if isinstance(value, dict) else {}

    def _save(self, key: str, value: Any) -> None:
        data = {**self._load(), key: value}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(partial, self.path)


def storage_path(folder: Path, url: str) -> Path:
    host = urlsplit(url).hostname or "server"
    return folder / f"{host}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.json"


class _Callback:
    """The loopback redirect URI, listening only while a sign-in waits for its code."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.uri = f"http://127.0.0.1:{self.port}/callback"
        self._server: asyncio.Server | None = None
        self._code: asyncio.Future[AuthorizationCodeResult] | None = None

    async def listen(self) -> None:
        self._code = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", self.port)

    async def wait(self) -> AuthorizationCodeResult:
        if self._code is None:
            raise SignInFailed("the sign-in never started")
        try:
            async with asyncio.timeout(SIGN_IN_TIMEOUT_S):
                return await self._code
        except TimeoutError:
            raise SignInFailed(f"no sign-in within {SIGN_IN_TIMEOUT_S:g} s") from None
        finally:
            if self._server is not None:
                self._server.close()
                self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
            line = (await reader.readline()).decode("latin-1").split()
            query = parse_qs(urlsplit(line[1]).query) if len(line) >= 2 else {}
            if "code" in query or "error" in query:
                self._settle(query)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n"
            )
            writer.write(_PAGE)
            await writer.drain()
        writer.close()

    def _settle(self, query: dict[str, list[str]]) -> None:
        if self._code is None or self._code.done():
            return
        first = {key: values[0] for key, values in query.items()}
        if "error" in first:
            reason = first.get("error_description") or first["error"]
            self._code.set_exception(SignInFailed(f"the sign-in was refused: {reason}"))
            return
        result = AuthorizationCodeResult(
            code=first["code"], state=first.get("state"), iss=first.get("iss")
        )
        self._code.set_result(result)


def oauth_for(
    spec: ServerSpec, folder: Path, open_browser: Callable[[str], object]
) -> OAuthClientProvider | None:
    """The SDK's sign-in for a remote HTTP server; ``None`` where it does not apply (stdio, a
    registry server with Atrium's token, or a configured ``Authorization`` header)."""
    target = spec.target
    if not isinstance(target, HttpTarget) or spec.registry:
        return None
    if any(name.lower() == "authorization" for name in target.headers):
        return None
    callback = _Callback()

    async def redirect(url: str) -> None:
        await callback.listen()
        open_browser(url)

    metadata = OAuthClientMetadata(
        client_name="Atrium client",
        redirect_uris=[callback.uri],
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="none",
    )
    storage = FileTokenStorage(storage_path(folder, target.url))
    return OAuthClientProvider(target.url, metadata, storage, redirect, callback.wait)
