"""Client ID Metadata Documents, served by a real aiohttp server on loopback.

Fetches use ``dev_mode=True`` so plain http to 127.0.0.1 is allowed; the SSRF tests run without
it and must refuse before any connection. ``FakeDNS`` stands in for name resolution, which this
machine cannot do for made-up names: it is the only double.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from atrium.auth.cimd import MetadataFetcher, is_metadata_client_id
from atrium.auth.errors import OAuthError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MakeFetcher = Callable[..., MetadataFetcher]
REDIRECT_URI = "http://127.0.0.1:33418/callback"


@dataclass
class DocumentServer:
    """Serves whatever ``routes`` say and records each request's path and Host header."""

    port: int = 0
    routes: dict[str, Handler] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    hosts: list[str] = field(default_factory=list)
    # Stalled handlers wait on this; teardown sets it so the server can stop at once.
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/client.json") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def respond(
        self,
        path: str,
        body: bytes,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            all_headers = {"Content-Type": content_type, **(headers or {})}
            return web.Response(body=body, status=status, headers=all_headers)

        self.routes[path] = handler

    def publish(self, path: str = "/client.json", *, url: str | None = None, **fields: Any) -> str:
        """Serve a valid document for ``url`` (default: this server), with ``fields`` on top."""
        url = url or self.url(path)
        document = {"client_id": url, "redirect_uris": [REDIRECT_URI], **fields}
        self.respond(path, json.dumps(document).encode())
        return url


class FakeDNS:
    """Answers each question with the next of its answers; the last one repeats."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = answers
        self.questions: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.questions.append((host, port))
        return self.answers[min(len(self.questions), len(self.answers)) - 1]


@pytest.fixture
async def server() -> AsyncIterator[DocumentServer]:
    state = DocumentServer()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        state.hits[request.path] += 1
        state.hosts.append(request.host)
        handler = state.routes.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    app = web.Application()
    app.router.add_route("GET", "/{path:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


@pytest.fixture
async def make_fetcher() -> AsyncIterator[MakeFetcher]:
    fetchers: list[MetadataFetcher] = []

    def make(**options: Any) -> MetadataFetcher:
        fetchers.append(MetadataFetcher(**options))
        return fetchers[-1]

    yield make
    for fetcher in fetchers:
        await fetcher.close()


async def refusal(fetcher: MetadataFetcher, client_id: str) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await fetcher.fetch(client_id)
    assert caught.value.error == "invalid_client"
    assert caught.value.status == 401
    return caught.value


async def test_a_valid_document_is_fetched_and_parsed(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    url = server.publish(
        client_name="Example Agent",
        grant_types=["authorization_code", "refresh_token"],
        scope="tools:read",
        application_type="web",
        logo_uri="https://app.example/logo.png",
        client_uri="https://app.example/",
        software_id="example-agent",
    )

    document = await make_fetcher(dev_mode=True).fetch(url)

    assert document.client_id == url
    assert document.client_name == "Example Agent"
    assert document.redirect_uris == (REDIRECT_URI,)
    assert document.grant_types == ("authorization_code", "refresh_token")
    assert document.response_types == ("code",)
    assert document.token_endpoint_auth_method == "none"
    assert document.scope == "tools:read"
    assert document.application_type == "web"
    assert document.logo_uri == "https://app.example/logo.png"
    assert document.client_uri == "https://app.example/"
    assert document.software_id == "example-agent"


async def test_fields_a_document_leaves_out_take_their_rfc_7591_defaults(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    url = server.publish()

    document = await make_fetcher(dev_mode=True).fetch(url)

    assert document.client_name is None
    assert document.grant_types == ("authorization_code",)
    assert document.response_types == ("code",)
    assert document.token_endpoint_auth_method == "none"
    assert document.application_type == "native"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
async def test_json_content_type_parameters_and_case_are_accepted(
    server: DocumentServer, make_fetcher: MakeFetcher, content_type: str
) -> None:
    url = server.url()
    body = json.dumps({"client_id": url, "redirect_uris": [REDIRECT_URI]}).encode()
    server.respond("/client.json", body, content_type=content_type)

    assert (await make_fetcher(dev_mode=True).fetch(url)).client_id == url


async def test_a_second_fetch_is_served_from_the_cache(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    url = server.publish()
    fetcher = make_fetcher(dev_mode=True)

    first = await fetcher.fetch(url)
    second = await fetcher.fetch(url)

    assert second is first
    assert server.hits["/client.json"] == 1


async def test_concurrent_fetches_of_one_document_share_one_request(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    url = server.publish()
    fetcher = make_fetcher(dev_mode=True)

    documents = await asyncio.gather(*(fetcher.fetch(url) for _ in range(5)))

    assert all(document is documents[0] for document in documents)
    assert server.hits["/client.json"] == 1


@pytest.mark.parametrize(
    ("cache_control", "still_cached_at", "expired_at"),
    [
        ("public, max-age=120", 119, 121),
        ("max-age=5", 59, 61),  # raised to the 60 s floor
        ("max-age=999999", 999, 1001),  # lowered to max_ttl_s
        (None, 299, 301),  # default_ttl_s
    ],
)
async def test_max_age_sets_how_long_a_document_stays_cached_within_bounds(
    server: DocumentServer,
    make_fetcher: MakeFetcher,
    cache_control: str | None,
    still_cached_at: float,
    expired_at: float,
) -> None:
    headers = {"Cache-Control": cache_control} if cache_control else {}
    url = server.url()
    body = json.dumps({"client_id": url, "redirect_uris": [REDIRECT_URI]}).encode()
    server.respond("/client.json", body, headers=headers)
    now = [1000.0]
    fetcher = make_fetcher(dev_mode=True, max_ttl_s=1000.0, clock=lambda: now[0])
    await fetcher.fetch(url)

    now[0] = 1000.0 + still_cached_at
    await fetcher.fetch(url)
    assert server.hits["/client.json"] == 1

    now[0] = 1000.0 + expired_at
    await fetcher.fetch(url)
    assert server.hits["/client.json"] == 2


async def test_a_no_store_document_is_used_but_not_cached(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    url = server.url()
    body = json.dumps({"client_id": url, "redirect_uris": [REDIRECT_URI]}).encode()
    server.respond("/client.json", body, headers={"Cache-Control": "no-store"})
    fetcher = make_fetcher(dev_mode=True)

    await fetcher.fetch(url)
    await fetcher.fetch(url)

    assert server.hits["/client.json"] == 2


async def test_a_failed_fetch_is_not_cached(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = make_fetcher(dev_mode=True)
    server.respond("/client.json", b"{}", status=503)
    await refusal(fetcher, server.url())

    url = server.publish()

    assert (await fetcher.fetch(url)).client_id == url
    assert server.hits["/client.json"] == 2


async def test_a_client_id_that_differs_from_the_url_is_refused(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    server.publish(client_id="https://impostor.example/client.json")

    error = await refusal(make_fetcher(dev_mode=True), server.url())

    assert "https://impostor.example/client.json" in error.description


async def test_a_document_without_redirect_uris_is_refused(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    url = server.url()
    server.respond("/client.json", json.dumps({"client_id": url}).encode())

    error = await refusal(make_fetcher(dev_mode=True), url)

    assert "redirect_uris" in error.description


@pytest.mark.parametrize(
    "method", ["client_secret_post", "client_secret_basic", "client_secret_jwt"]
)
async def test_auth_methods_that_need_a_shared_secret_are_refused(
    server: DocumentServer, make_fetcher: MakeFetcher, method: str
) -> None:
    url = server.publish(token_endpoint_auth_method=method)

    error = await refusal(make_fetcher(dev_mode=True), url)

    assert method in error.description


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"token_endpoint_auth_method": "private_key_jwt"}, "private_key_jwt"),
        ({"token_endpoint_auth_method": ["none"]}, "token_endpoint_auth_method"),
        ({"client_id": None}, "client_id"),
        ({"client_secret": "s3cret"}, "client_secret"),
        ({"client_secret_expires_at": 0}, "client_secret_expires_at"),
        ({"grant_types": ["authorization_code", "client_credentials"]}, "client_credentials"),
        ({"response_types": ["token"]}, "token"),
        ({"redirect_uris": []}, "redirect_uris"),
        ({"redirect_uris": "https://app.example/cb"}, "redirect_uris"),
        ({"redirect_uris": ["/callback"]}, "/callback"),
        ({"redirect_uris": ["https://app.example/cb#done"]}, "https://app.example/cb#done"),
        ({"client_name": 42}, "client_name"),
        ({"scope": ["tools"]}, "scope"),
        ({"application_type": "desktop"}, "desktop"),
    ],
)
async def test_invalid_metadata_is_refused_naming_the_field(
    server: DocumentServer, make_fetcher: MakeFetcher, fields: dict[str, Any], named: str
) -> None:
    url = server.publish(**fields)

    error = await refusal(make_fetcher(dev_mode=True), url)

    assert named in error.description


@pytest.mark.parametrize("body", [b"[1, 2]", b'"client"', b"{not json", b"\xff\xfe{}"])
async def test_a_body_that_is_not_a_json_object_is_refused(
    server: DocumentServer, make_fetcher: MakeFetcher, body: bytes
) -> None:
    server.respond("/client.json", body)

    error = await refusal(make_fetcher(dev_mode=True), server.url())

    assert "JSON" in error.description


async def test_a_body_of_exactly_max_bytes_is_accepted(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    url = server.url()
    document = {"client_id": url, "redirect_uris": [REDIRECT_URI], "client_name": ""}
    padding = 512 - len(json.dumps(document).encode())
    document["client_name"] = "x" * padding
    server.respond("/client.json", json.dumps(document).encode())

    assert (await make_fetcher(dev_mode=True, max_bytes=512).fetch(url)).client_id == url


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(6):
        await response.write(b" " * 1024)
    await response.write(b"{}")
    return response


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_larger_than_max_bytes_is_refused(
    server: DocumentServer, make_fetcher: MakeFetcher, framing: str
) -> None:
    if framing == "chunked":
        server.routes["/client.json"] = _chunked
    else:
        server.respond("/client.json", b" " * 6000 + b"{}")

    error = await refusal(make_fetcher(dev_mode=True), server.url())

    assert "5120 bytes" in error.description


@pytest.mark.parametrize("content_type", ["text/plain", "text/html; charset=utf-8"])
async def test_a_wrong_content_type_is_refused(
    server: DocumentServer, make_fetcher: MakeFetcher, content_type: str
) -> None:
    url = server.url()
    body = json.dumps({"client_id": url, "redirect_uris": [REDIRECT_URI]}).encode()
    server.respond("/client.json", body, content_type=content_type)

    error = await refusal(make_fetcher(dev_mode=True), url)

    assert content_type in error.description


@pytest.mark.parametrize("status", [302, 307])
async def test_a_redirect_is_refused_and_not_followed(
    server: DocumentServer, make_fetcher: MakeFetcher, status: int
) -> None:
    server.publish("/elsewhere.json", url=server.url())
    server.respond("/client.json", b"", status=status, headers={"Location": "/elsewhere.json"})

    error = await refusal(make_fetcher(dev_mode=True), server.url())

    assert "redirect" in error.description
    assert server.hits["/elsewhere.json"] == 0


async def test_a_status_other_than_200_is_refused(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    error = await refusal(make_fetcher(dev_mode=True), server.url("/missing.json"))

    assert "404" in error.description


@pytest.mark.parametrize("stall", ["before the headers", "in the middle of the body"])
async def test_a_stalled_server_times_out_within_timeout_s(
    server: DocumentServer, make_fetcher: MakeFetcher, stall: str
) -> None:
    async def stalled(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if stall != "before the headers":
            await response.prepare(request)
            await response.write(b'{"client_id": ')
        await server.release.wait()
        return response

    server.routes["/client.json"] = stalled
    started = time.monotonic()

    error = await refusal(make_fetcher(dev_mode=True, timeout_s=0.5), server.url())

    assert time.monotonic() - started < 1.5
    assert "0.5 s" in error.description


async def test_plain_http_is_refused_without_dev_mode(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    url = server.publish()

    error = await refusal(make_fetcher(), url)

    assert "https" in error.description
    assert server.hits["/client.json"] == 0


async def test_plain_http_in_dev_mode_goes_only_to_loopback(make_fetcher: MakeFetcher) -> None:
    dns = FakeDNS(["93.184.216.34"])

    error = await refusal(make_fetcher(dev_mode=True, resolve=dns), "http://client.test/c.json")

    assert "93.184.216.34" in error.description


@pytest.mark.parametrize(
    ("client_id", "answers"),
    [("https://127.0.0.1:1/client.json", []), ("https://localhost:1/client.json", ["127.0.0.1"])],
)
async def test_loopback_is_refused_without_dev_mode_even_over_https(
    make_fetcher: MakeFetcher, client_id: str, answers: list[str]
) -> None:
    dns = FakeDNS(answers)

    error = await refusal(make_fetcher(resolve=dns), client_id)

    assert "loopback" in error.description


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("10.0.0.5", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "private"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("[::ffff:10.0.0.5]", "private"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("[fe80::1]", "link-local"),
        ("[fd00::1]", "private"),
        ("[::]", "unspecified"),
        ("[::1]", "loopback"),
    ],
)
async def test_special_use_literal_addresses_are_refused_without_resolving(
    make_fetcher: MakeFetcher, host: str, kind: str
) -> None:
    dns = FakeDNS()

    error = await refusal(make_fetcher(resolve=dns), f"https://{host}/client.json")

    assert kind in error.description
    assert dns.questions == []


@pytest.mark.parametrize(
    "answers", [["10.0.0.5"], ["93.184.216.34", "10.0.0.5"], ["2606:4700::1111", "fd00::5"]]
)
async def test_a_host_name_is_refused_when_any_of_its_addresses_is_private(
    make_fetcher: MakeFetcher, answers: list[str]
) -> None:
    dns = FakeDNS(answers)

    error = await refusal(make_fetcher(resolve=dns), "https://client.test/client.json")

    assert answers[-1] in error.description
    assert dns.questions == [("client.test", 443)]


async def test_a_host_name_that_does_not_resolve_is_refused(make_fetcher: MakeFetcher) -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    unknown = await refusal(make_fetcher(resolve=nxdomain), "https://client.test/client.json")
    empty = await refusal(make_fetcher(resolve=FakeDNS([])), "https://client.test/client.json")

    assert "cannot resolve host client.test" in unknown.description
    assert "no address" in empty.description


async def test_the_connection_goes_to_the_checked_address_under_the_real_host_name(
    server: DocumentServer, make_fetcher: MakeFetcher
) -> None:
    # A rebinding DNS: the second answer would point elsewhere, but it is never asked again.
    dns = FakeDNS(["127.0.0.1"], ["10.0.0.5"])
    url = server.publish(url=f"http://client.test:{server.port}/client.json")

    document = await make_fetcher(dev_mode=True, resolve=dns).fetch(url)

    assert document.client_id == url
    assert server.hosts == [f"client.test:{server.port}"]
    assert dns.questions == [("client.test", server.port)]


async def test_fetch_refuses_a_client_id_that_is_not_a_metadata_url(
    make_fetcher: MakeFetcher,
) -> None:
    error = await refusal(make_fetcher(), "https://app.example/client.json#me")

    assert "fragment" in error.description


@pytest.mark.parametrize(
    ("client_id", "dev_mode", "expected"),
    [
        ("https://app.example/client.json", False, True),
        ("https://app.example:8443/clients/agent?v=2", False, True),
        ("https://127.0.0.1/client.json", False, True),  # a URL; fetch refuses the address
        ("https://app.example", False, False),
        ("https://app.example/", False, False),
        ("http://app.example/client.json", False, False),
        ("http://app.example/client.json", True, False),
        ("http://client.test/client.json", True, False),
        ("http://127.0.0.1:3000/client.json", False, False),
        ("http://127.0.0.1:3000/client.json", True, True),
        ("http://localhost:3000/client.json", True, True),
        ("http://[::1]:3000/client.json", True, True),
        ("https://app.example/client.json#me", False, False),
        ("https://app.example/client.json#", False, False),
        ("https://agent@app.example/client.json", False, False),
        ("https://agent:pw@app.example/client.json", False, False),
        ("https://app.example/a/../client.json", False, False),
        ("https://app.example/./client.json", False, False),
        ("https://app.example/a/%2E%2E/client.json", False, False),
        ("https://app.example:0/client.json", False, False),
        ("https://app.example:99999/client.json", False, False),
        ("https://[::1/client.json", False, False),
        ("https://app.example/client .json", False, False),
        ("https://app.exämple/client.json", False, False),
        ("ftp://app.example/client.json", False, False),
        ("my-registered-client", False, False),
        ("", False, False),
    ],
)
def test_is_metadata_client_id_truth_table(client_id: str, dev_mode: bool, expected: bool) -> None:
    assert is_metadata_client_id(client_id, dev_mode=dev_mode) is expected
