"""An OAuth 2.1 client with DPoP for ``atrium bridge``: signs in once in the browser, then
keeps a DPoP-bound token fresh.

From a 401 it discovers everything (MCP spec, "Authorization"): the protected resource
metadata named in ``WWW-Authenticate`` (RFC 9728), the authorization server's metadata
(RFC 8414), registers itself (RFC 7591, a native app with a loopback redirect, RFC 8252), and
runs the authorization code flow with PKCE S256, receiving the code on a one-shot loopback
listener. Every token request and every MCP request carries a DPoP proof from a key kept on
this machine (RFC 9449), so a copied token is useless elsewhere; a ``use_dpop_nonce``
answer is retried once with the server's nonce (§8, §9).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
from joserfc.jwk import ECKey

from atrium.client.credentials import CredentialStore
from atrium.client.dpop import make_proof
from atrium.errors import AtriumError

CALLBACK_PATH = "/callback"
SIGN_IN_TIMEOUT_S = 300.0
EXPIRY_MARGIN_S = 30.0


class SignInFailed(AtriumError):
    pass


class DpopAuth(httpx2.Auth):
    # Bodies are read only for refusals (the MCP answers may be endless event streams).
    requires_response_body = False

    def __init__(
        self,
        store: CredentialStore,
        open_browser: Callable[[str], object],
        *,
        sign_in_timeout_s: float = SIGN_IN_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.open_browser = open_browser
        self.sign_in_timeout_s = sign_in_timeout_s
        self.credentials = store.load()
        if not self.credentials.dpop_key:
            key = ECKey.generate_key("P-256", auto_kid=True)
            self.credentials.dpop_key = dict(key.as_dict(private=True))
            store.save(self.credentials)
        self.key = ECKey.import_key(self.credentials.dpop_key)
        self.nonces: dict[str, str] = {}  # origin -> the last DPoP-Nonce it sent
        self.lock = asyncio.Lock()
        self.metadata: dict[str, Any] = {}

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        async with self.lock:
            if self._expired() and self.credentials.refresh_token and self.metadata:
                refreshed = yield self._token_request({"grant_type": "refresh_token"})
                await refreshed.aread()
                self._take_tokens(refreshed, refreshing=True)
        self._sign(request)
        used = self.credentials.access_token
        response = yield request
        if response.status_code in (400, 401):
            await response.aread()
        if self._nonce_retry(response):
            self._sign(request)
            response = yield request
        if response.status_code != 401:
            return
        async with self.lock:
            if self.credentials.access_token == used:  # else another request signed in
                async for step in self._sign_in(response):
                    step.extensions["atrium_response"] = yield step
        self._sign(request)
        yield request

    # -- signing requests --------------------------------------------------------------

    def _sign(self, request: httpx2.Request) -> None:
        token = self.credentials.access_token
        if token:
            request.headers["Authorization"] = f"DPoP {token}"
            request.headers["DPoP"] = self._proof(request.method, str(request.url), token)

    def _proof(self, method: str, url: str, token: str | None = None) -> str:
        nonce = self.nonces.get(_origin(url))
        return make_proof(self.key, method=method, url=url, access_token=token, nonce=nonce)

    def _nonce_retry(self, response: httpx2.Response) -> bool:
        if response.status_code not in (400, 401):
            return False
        challenge = response.headers.get("www-authenticate", "")
        body_error = _json_error(response)
        wants = "use_dpop_nonce" in challenge or body_error == "use_dpop_nonce"
        return self._remember_nonce(response) and wants

    def _remember_nonce(self, response: httpx2.Response) -> bool:
        nonce = response.headers.get("dpop-nonce")
        if nonce:
            self.nonces[_origin(str(response.request.url))] = nonce
        return bool(nonce)

    def _expired(self) -> bool:
        return not self.credentials.access_token or (
            self.credentials.expires_at - EXPIRY_MARGIN_S <= time.time()
        )

    # -- signing in ----------------------------------------------------------------------

    async def _sign_in(self, challenge: httpx2.Response) -> AsyncGenerator[httpx2.Request, None]:
        """Discovery, registration, the browser and the token: requests to send, in order."""
        prm_url = _param(challenge.headers.get("www-authenticate", ""), "resource_metadata")
        if prm_url is None:
            raise SignInFailed("the server's 401 names no resource_metadata (RFC 9728)")
        prm_request = httpx2.Request("GET", prm_url)
        yield prm_request
        prm = await _json(prm_request, "protected resource metadata")
        issuer = str(prm["authorization_servers"][0])
        as_request = httpx2.Request("GET", _metadata_url(issuer))
        yield as_request
        self.metadata = await _json(as_request, "server metadata")
        if self.metadata.get("issuer") != issuer:
            raise SignInFailed("the authorization server's metadata names another issuer")
        scope = _param(challenge.headers.get("www-authenticate", ""), "scope") or " ".join(
            prm.get("scopes_supported") or []
        )
        if self.credentials.issuer != issuer or not self.credentials.client_id:
            register = self._registration_request()
            yield register
            registered = await _json(register, "registration", 201)
            self.credentials.client_id = str(registered["client_id"])
            self.credentials.issuer = issuer
            self.store.save(self.credentials)
        if self.credentials.refresh_token:
            async for step in self._token({"grant_type": "refresh_token"}):
                yield step
            if self._take_tokens(self._answer, refreshing=True):
                return
        code, redirect_uri, verifier = await self._browser_step(str(prm["resource"]), scope)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "resource": str(prm["resource"]),
        }
        async for step in self._token(form):
            yield step
        if not self._take_tokens(self._answer, refreshing=False):
            raise SignInFailed(f"the token endpoint refused the code: {self._answer.text}")

    async def _token(self, form: dict[str, str]) -> AsyncGenerator[httpx2.Request, None]:
        """A token request, sent again once with the server's nonce if it asks for one."""
        for _ in range(2):
            request = self._token_request(form)
            yield request
            self._answer: httpx2.Response = request.extensions["atrium_response"]
            await self._answer.aread()
            if not (
                self._remember_nonce(self._answer) and _json_error(self._answer) == "use_dpop_nonce"
            ):
                return

    def _registration_request(self) -> httpx2.Request:
        endpoint = self.metadata.get("registration_endpoint")
        if not endpoint:
            raise SignInFailed("the authorization server offers no client registration")
        body = {
            "client_name": "Atrium bridge",
            "redirect_uris": [f"http://127.0.0.1{CALLBACK_PATH}"],
            "application_type": "native",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }
        return httpx2.Request("POST", str(endpoint), json=body)

    def _token_request(self, form: dict[str, str]) -> httpx2.Request:
        endpoint = str(self.metadata["token_endpoint"])
        form = {**form, "client_id": self.credentials.client_id or ""}
        if form["grant_type"] == "refresh_token":
            form["refresh_token"] = self.credentials.refresh_token or ""
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "DPoP": self._proof("POST", endpoint),
        }
        return httpx2.Request("POST", endpoint, content=urlencode(form), headers=headers)

    def _take_tokens(self, response: httpx2.Response, *, refreshing: bool) -> bool:
        if response.status_code != 200:
            if refreshing:
                self.credentials.refresh_token = None  # spent or revoked: sign in again
                self.store.save(self.credentials)
            return False
        body = response.json()
        if body.get("token_type", "").lower() != "dpop":
            raise SignInFailed("the server issued a token that is not DPoP-bound")
        self.credentials.access_token = str(body["access_token"])
        self.credentials.refresh_token = body.get("refresh_token") or (
            self.credentials.refresh_token if refreshing else None
        )
        self.credentials.expires_at = time.time() + float(body.get("expires_in", 300))
        self.credentials.scope = body.get("scope")
        self.store.save(self.credentials)
        return True

    async def _browser_step(self, resource: str, scope: str) -> tuple[str, str, str]:
        """Open the authorization page; wait for the redirect on a loopback port."""
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        state = secrets.token_urlsafe(16)
        received: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        server = await asyncio.start_server(_callback_handler(received), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        redirect_uri = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
        params = {
            "response_type": "code",
            "client_id": self.credentials.client_id or "",
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            "resource": resource,
            "dpop_jkt": self.key.thumbprint(),  # RFC 9449 §10: the code is bound to our key
            **({"scope": scope} if scope else {}),
        }
        link = f"{self.metadata['authorization_endpoint']}?{urlencode(params)}"
        # In a thread and not awaited: a browser command may block until it is closed, and the
        # callback it leads to must reach our listener meanwhile.
        opening = asyncio.get_running_loop().run_in_executor(None, self.open_browser, link)
        try:
            async with server:
                answer = await asyncio.wait_for(received, self.sign_in_timeout_s)
        except TimeoutError:
            raise SignInFailed(f"no sign-in within {self.sign_in_timeout_s:g} s") from None
        finally:
            opening.cancel()
        if answer.get("state") != state or "code" not in answer:
            raise SignInFailed(f"sign-in failed: {answer.get('error', 'state mismatch')}")
        if answer.get("iss") not in (None, self.credentials.issuer):
            raise SignInFailed("the answer came from another issuer (RFC 9207)")
        return answer["code"], redirect_uri, verifier


def _callback_handler(
    received: asyncio.Future[dict[str, str]],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode("latin-1")
        target = line.split(" ")[1] if line.count(" ") >= 2 else ""
        parts = urlsplit(target)
        ok = parts.path == CALLBACK_PATH
        if ok and not received.done():
            received.set_result({k: v[0] for k, v in parse_qs(parts.query).items()})
        text = "Signed in; you can close this page." if ok else "Not found."
        writer.write(
            f"HTTP/1.1 {'200 OK' if ok else '404 Not Found'}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n{text}".encode()
        )
        await writer.drain()
        writer.close()

    return handle


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _metadata_url(issuer: str) -> str:
    parts = urlsplit(issuer)
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}"


def _param(header: str, name: str) -> str | None:
    match = re.search(rf'{name}="([^"]*)"', header)
    return match[1] if match else None


async def _json(request: httpx2.Request, what: str, status: int = 200) -> dict[str, Any]:
    response: httpx2.Response = request.extensions["atrium_response"]
    await response.aread()
    if response.status_code != status:
        raise SignInFailed(f"{what}: HTTP {response.status_code} from {response.request.url}")
    body = response.json()
    if not isinstance(body, dict):
        raise SignInFailed(f"{what}: not a JSON object")
    return body


def _json_error(response: httpx2.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body.get("error")) if isinstance(body, dict) else None
