"""Attacks on the web console (issue 16): the builtin client's redirect, the sign-in flow, the
session and CSRF, roles, markup and secrets a backend or a log puts on a page, and the headers
every answer carries. A passing test documents a defence.

The attacker here is a page on another site, a second user of the same Atrium, a process on
the same machine that listens on a loopback port, or a backend whose tool names, descriptions
and log lines are chosen to break the page that shows them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from mcp.types import ToolAnnotations

from atrium.auth.operator import CONSOLE_CALLBACK_PATH, CONSOLE_CLIENT_ID
from atrium.secretbox import SecretBox
from atrium.servers.app import create_app as create_server_app
from atrium.servers.shutdown import GracefulServer
from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings, load_settings
from atrium.store import PROJECT_OWNER
from atrium.web.security import CSP
from atrium.web.session import SESSION_COOKIE
from atrium.web.signin import FLOW_COOKIE, safe_next
from tests.auth.flow import (
    PASSWORD,
    Browser,
    Pkce,
    authorize_url,
    exchange_code,
    form_action,
    form_fields,
    register_client,
)
from tests.gateway.helpers import serving
from tests.web.conftest import XSS, Console, csrf_of, submit

SECRET = "s3cr3t-token-value-4711"
STORED = "stored-secret-value-0815"
EVIL_TOOL = "../restart"
MARKUP = '<img src=x onerror="alert(1)">'


@pytest.fixture
def settings(tmp_path: Path, listener: Any) -> Settings:
    """The console's settings, with one variable a server's ``env`` names as a secret."""
    port = listener.getsockname()[1]
    (tmp_path / "atrium.yaml").write_text(
        f"gateway:\n  port: {port}\n  public_url: http://127.0.0.1:{port}\n"
    )
    return load_settings(tmp_path, environ={"EVIL_TOKEN": SECRET})


@dataclass
class Evil:
    port: int


@pytest.fixture
async def evil(console: Console) -> AsyncIterator[Evil]:
    """A backend whose tool names and descriptions are chosen to break the console's pages,
    routed as server ``evil`` (its ``env`` holds a secret by reference)."""
    server: AtriumServer[Any] = AtriumServer("evil", version="1.0.0")

    @server.tool(name=EVIL_TOOL, description=f"Looks harmless {MARKUP}")
    def restart_tool() -> str:
        return "the tool ran, nothing was restarted"

    @server.tool(
        name="marked",
        title=f"Title {MARKUP}",
        description=f"Description {XSS}",
        annotations=ToolAnnotations(readOnlyHint=True, title=XSS),
    )
    def marked(choice: str = "a") -> str:
        return f"{XSS} came back"

    settings = console.gateway.parts.settings
    box = SecretBox.load(settings)
    await console.gateway.store.secrets.create(PROJECT_OWNER, "EVIL_DB", STORED, box=box, by="t")
    app = create_server_app(server, callers=None)
    graceful = GracefulServer(app, host="127.0.0.1", port=0, log_level="warning", timeout_s=5)
    async with serving(graceful) as served:
        await console.gateway.add_server(
            "evil",
            port=served.port,
            oauth={"required": True},
            env={"EVIL_API_TOKEN": {"$env": "EVIL_TOKEN"}, "EVIL_DB": {"$secret": "EVIL_DB"}},
            description="A backend with markup in its tools",
        )
        yield Evil(served.port)


def _callback(console: Console) -> str:
    return f"{console.base}{CONSOLE_CALLBACK_PATH}"


async def _authorize_as_console(browser: Browser, console: Console, redirect_uri: str) -> Any:
    url = authorize_url(
        console.base, CONSOLE_CLIENT_ID, Pkce.new(), scope="user", redirect_uri=redirect_uri
    )
    return await browser.authorize_url(url)


# -- the builtin client's redirect ----------------------------------------------------------


async def test_the_console_client_cannot_send_its_code_to_another_loopback_port(
    console: Console,
) -> None:
    # RFC 8252 §7.3 lets a *native* loopback redirect change port; the console is no native
    # app, and a local process listening on another port would get a code it can redeem
    # itself (a public client: its own PKCE verifier is all the exchange needs).
    pkce = Pkce.new()
    elsewhere = "http://127.0.0.1:4999/admin/callback"
    async with Browser.open(console.base) as browser:
        page = await browser.authorize_url(
            authorize_url(console.base, CONSOLE_CLIENT_ID, pkce, redirect_uri=elsewhere)
        )
        code = None
        if 'name="password"' in page.text:
            consent = await browser.sign_in(page, "admin", PASSWORD)
            back = await browser.decide(consent)
            location = back.headers.get("location", "")
            code = dict(re.findall(r"[?&](code)=([^&]+)", location)).get("code")
        redeemed = (
            await exchange_code(
                browser.http,
                console.base,
                CONSOLE_CLIENT_ID,
                code,
                pkce.verifier,
                redirect_uri=elsewhere,
            )
            if code
            else None
        )

    assert redeemed is None or redeemed.status_code != 200, redeemed.text
    assert code is None, "the code went to a port the console does not serve"
    assert redeemed is None
    assert page.status_code == 400
    assert "redirect_uri" in page.text


@pytest.mark.parametrize(
    "near_miss",
    [
        "{base}/admin/callback/",
        "{base}/admin/callback?x=1",
        "{base}/admin/Callback",
        "{base}/admin/callback/../callback",
        "http://localhost:{port}/admin/callback",
        "https://127.0.0.1:{port}/admin/callback",
        "{base}/admin/signin",
    ],
)
async def test_a_near_miss_of_the_consoles_callback_is_refused(
    console: Console, near_miss: str
) -> None:
    port = urlsplit(console.base).port
    uri = near_miss.format(base=console.base, port=port)
    async with Browser.open(console.base) as browser:
        page = await _authorize_as_console(browser, console, uri)

    assert page.status_code == 400
    assert 'name="password"' not in page.text


async def test_another_client_cannot_borrow_the_consoles_callback(console: Console) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        refused = await http.post(
            f"{console.base}/api/v1/core/oauth/register",
            json={
                "redirect_uris": [_callback(console)],
                "application_type": "native",
                "token_endpoint_auth_method": "none",
            },
        )
        # Registered on another loopback port with the console's path: its port may change
        # at each authorization (RFC 8252 §7.3), but never to one Atrium serves.
        client = await register_client(
            http, console.base, redirect_uris=["http://127.0.0.1:4999/admin/callback"]
        )
    async with Browser.open(console.base) as browser:
        page = await browser.authorize_url(
            authorize_url(
                console.base, client["client_id"], Pkce.new(), redirect_uri=_callback(console)
            )
        )

    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_redirect_uri"
    assert page.status_code == 400
    assert 'name="password"' not in page.text


# -- the sign-in flow and the session cookie ------------------------------------------------


async def test_a_callback_carrying_another_browsers_code_signs_nobody_in(
    console: Console,
) -> None:
    # Login CSRF: the attacker signs in as themselves, stops before the callback and hands
    # the victim the link; the victim's browser holds a flow of its own (or none).
    async with console.browser() as attacker:
        start = await attacker.get("/admin/signin")
        login = await attacker.get(start.headers["location"])
        consent = await submit(attacker, login, username="reader", password=PASSWORD)
        back = await submit(attacker, consent, decision="approve")
        callback = back.headers["location"]
    async with console.browser() as victim:
        await victim.get("/admin/signin")
        with_flow = await victim.get(callback)
        victim.cookies.clear()
        without_flow = await victim.get(callback)
        after = await victim.get("/admin")

    assert (with_flow.status_code, without_flow.status_code) == (400, 400)
    assert SESSION_COOKIE not in victim.cookies
    assert after.status_code == 303


async def test_the_flow_cookie_does_not_pass_for_a_session(console: Console) -> None:
    async with console.browser() as http:
        await http.get("/admin/signin")
        flow = http.cookies[FLOW_COOKIE]
        http.cookies.set(SESSION_COOKIE, flow, path="/admin")
        answer = await http.get("/admin")

    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/admin/signin")


@pytest.mark.parametrize(
    "target",
    [
        "/admin/..//evil.example",
        "/admin/%2e%2e//evil.example",
        "/admin\t//evil.example",
        "/admin@evil.example",
        "/admin:x@evil.example",
        "http:/admin",
        "/admin\r\nSet-Cookie: x=1",
    ],
)
def test_the_return_address_is_a_console_path_or_the_dashboard(target: str) -> None:
    kept = safe_next(target)
    parts = urlsplit(kept)

    assert not parts.scheme
    assert not parts.netloc
    assert kept == "/admin" or kept.startswith("/admin/")
    assert "\r" not in kept
    assert "\n" not in kept


# -- CSRF ------------------------------------------------------------------------------------


async def test_one_users_csrf_token_is_no_token_for_another(console: Console) -> None:
    async with console.browser("reader") as reader, console.browser("admin") as admin:
        theirs = csrf_of(await reader.get("/admin/servers/tools"))
        answer = await admin.post("/admin/servers/tools/restart", data={"csrf": theirs})

    assert answer.status_code == 403
    assert 'data-error="csrf"' in answer.text


async def test_a_csrf_token_dies_with_its_session(console: Console) -> None:
    async with console.browser("admin") as http:
        page = await http.get("/admin/servers/tools")
        old = csrf_of(page)
        await http.post("/admin/signout", data={"csrf": old})
    async with console.browser("admin") as http:
        answer = await http.post("/admin/servers/tools/restart", data={"csrf": old})

    assert answer.status_code == 403
    assert 'data-error="csrf"' in answer.text


async def test_the_csrf_token_counts_only_in_the_form_body(console: Console) -> None:
    async with console.browser("admin") as http:
        token = csrf_of(await http.get("/admin/servers/tools"))
        in_query = await http.post(f"/admin/servers/tools/restart?csrf={token}", data={})
        # What a cross-site form with enctype=text/plain sends.
        as_text = await http.post(
            "/admin/servers/tools/restart",
            content=f"csrf={token}",
            headers={"Content-Type": "text/plain"},
        )
        in_header = await http.post(
            "/admin/servers/tools/restart", data={}, headers={"X-CSRF-Token": token}
        )

    for answer in (in_query, in_header):
        assert answer.status_code == 403
        assert 'data-error="csrf"' in answer.text
    assert as_text.status_code == 403


# -- roles and try it ------------------------------------------------------------------------


async def test_try_it_on_a_server_hidden_from_the_web_is_not_found(console: Console) -> None:
    async with console.browser("admin") as http:
        token = csrf_of(await http.get("/admin/servers/tools"))
        answer = await http.post(
            "/admin/servers/hidden/tools/echo", data={"csrf": token, "arg.text": "hi"}
        )
        log = await http.get("/admin/servers/hidden/log")

    assert answer.status_code == 404
    assert log.status_code == 404


async def test_a_reader_cannot_try_a_tool_by_posting_its_form_anyway(console: Console) -> None:
    async with console.browser("reader") as http:
        token = csrf_of(await http.get("/admin/servers/tools"))
        answer = await http.post(
            "/admin/servers/tools/tools/delete_everything", data={"csrf": token}
        )
        escaped = await http.post("/admin/servers/tools/tools/..%2Frestart", data={"csrf": token})

    assert answer.status_code == 404
    assert escaped.status_code in (403, 404)
    assert console.gateway.parts.directory.routes  # nothing changed the routes


async def test_the_audit_record_of_another_user_is_not_found(console: Console) -> None:
    async with console.browser("admin") as admin:
        page = await admin.get("/admin/servers/tools")
        tried = await admin.post(
            "/admin/servers/tools/tools/echo", data={"csrf": csrf_of(page), "arg.text": "mine"}
        )
        (request_id,) = re.findall(r'href="/admin/audit/([0-9a-f]+)"', tried.text)
        await console.gateway.audit(request_id)
    async with console.browser("user") as user:
        answer = await user.get(f"/admin/audit/{request_id}")
        listed = await user.get("/admin/audit", params={"caller": "admin"})

    assert answer.status_code == 404
    assert request_id not in listed.text


# -- what a backend or a log puts on the page ------------------------------------------------


async def test_a_tool_name_cannot_aim_the_try_it_form_at_an_admin_action(
    console: Console, evil: Evil
) -> None:
    async with console.browser("admin") as http:
        tools = await http.get("/admin/servers/evil/tools")
        actions = re.findall(r'<form class="try" method="post" action="([^"]+)"', tools.text)
        (evil_action,) = [a for a in actions if "restart" in a]
        tried = await http.post(evil_action, data={"csrf": csrf_of(tools)})

    assert actions, tools.text
    for action in actions:
        # Where a browser posts the form: dot segments resolved (RFC 3986 §5.2.4).
        resolved = urlsplit(str(httpx2.URL(console.base).join(action))).path
        assert resolved.startswith("/admin/servers/evil/tools/"), action
    # The form still calls the tool of that name, and only the tool.
    assert 'data-outcome="ok"' in tried.text, tried.text
    assert "nothing was restarted" in tried.text


async def test_tool_names_titles_and_descriptions_are_shown_as_text(
    console: Console, evil: Evil
) -> None:
    async with console.browser("user") as http:
        tools = await http.get("/admin/servers/evil/tools")
        token = csrf_of(await http.get("/admin/servers/evil"))
        result = await http.post("/admin/servers/evil/tools/marked", data={"csrf": token})

    assert tools.status_code == 200
    for page in (tools, result):
        assert XSS not in page.text
        assert MARKUP not in page.text
    assert "&lt;script&gt;" in tools.text
    assert "&lt;script&gt;" in result.text


async def test_the_log_tail_shows_markup_as_text(console: Console, evil: Evil) -> None:
    logs = console.gateway.parts.settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "mcp-evil.log").write_text(f"started\n{XSS}\n</pre>{MARKUP}\n")
    async with console.browser("admin") as http:
        page = await http.get("/admin/servers/evil")
        async with http.stream("GET", "/admin/servers/evil/log") as stream:
            first = await _first_event(stream)

    for text in (page.text, first):
        assert XSS not in text
        assert MARKUP not in text
        assert "&lt;/pre&gt;" in text


async def test_the_log_tail_never_shows_a_secret_of_the_servers_env(
    console: Console, evil: Evil
) -> None:
    # A server that prints its configuration, or a library that logs a request with its
    # credentials: the value came from a $env (or $file, $secret) reference, which exists so
    # that the secret is shown nowhere.
    logs = console.gateway.parts.settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "mcp-evil.log").write_text(f"token={SECRET}\ndb password {STORED}!\nready\n")
    async with console.browser("admin") as http:
        page = await http.get("/admin/servers/evil")
        async with http.stream("GET", "/admin/servers/evil/log") as stream:
            first = await _first_event(stream)

    for text in (page.text, first):
        assert "ready" in text
        assert SECRET not in text
        assert STORED not in text
        assert "token=***" in text


async def _first_event(stream: httpx2.Response) -> str:
    lines: list[str] = []
    async for line in stream.aiter_lines():
        lines.append(line)
        if line == "" and len(lines) > 1:
            break
    return "\n".join(lines)


# -- headers and streams without a session ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/admin/events", {}),
        ("GET", "/admin/events", {"HX-Request": "true"}),
        ("GET", "/admin/servers/tools/log", {"HX-Request": "true"}),
        ("POST", "/admin/servers/tools/restart", {}),
        ("GET", "/admin/callback", {}),
        ("GET", "/admin/signin", {}),
    ],
)
async def test_without_a_session_no_stream_opens_and_every_answer_forbids_framing(
    console: Console, method: str, path: str, headers: dict[str, str]
) -> None:
    async with console.browser() as http:
        answer = await http.request(method, path, headers=headers)

    assert not answer.headers.get("content-type", "").startswith("text/event-stream")
    assert answer.status_code in (303, 400, 401)
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-frame-options"] == "DENY"


async def test_the_sign_in_pages_of_the_authorization_server_cannot_be_framed(
    console: Console,
) -> None:
    async with console.browser() as http:
        start = await http.get("/admin/signin")
        login = await http.get(start.headers["location"])

    assert 'name="password"' in login.text
    framing = login.headers.get("x-frame-options", "").upper()
    policy = login.headers.get("content-security-policy", "")
    assert framing == "DENY" or "frame-ancestors 'none'" in policy


async def test_the_login_form_posts_to_the_authorization_server_only(console: Console) -> None:
    async with console.browser() as http:
        start = await http.get("/admin/signin", params={"next": "https://evil.example/"})
        login = await http.get(start.headers["location"])

    action = str(login.url.join(form_action(login.text)))
    assert action.startswith(f"{console.base}/api/v1/core/oauth/")
    assert "evil.example" not in str(form_fields(login.text))
