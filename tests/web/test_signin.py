"""Signing in to the console through Atrium's own authorization server, the session cookie,
signing out, and the return address that must never leave the console."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from atrium.web.session import SESSION_COOKIE
from atrium.web.signin import safe_next
from tests.auth.flow import PASSWORD
from tests.web.conftest import Console, csrf_of, submit


async def test_a_visitor_without_a_session_is_sent_to_sign_in_with_the_page_to_return_to(
    console: Console,
) -> None:
    async with console.browser() as http:
        answer = await http.get("/admin/audit?server=tools")

    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location.path == "/admin/signin"
    assert parse_qs(location.query)["next"] == ["/admin/audit?server=tools"]


async def test_sign_in_goes_through_the_authorization_server_with_pkce(console: Console) -> None:
    async with console.browser() as http:
        answer = await http.get("/admin/signin")

    location = urlsplit(answer.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.path == "/api/v1/core/oauth/authorize"
    assert query["client_id"] == "atrium-console"
    assert query["redirect_uri"] == f"{console.base}/admin/callback"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 20


@pytest.mark.parametrize("role", ["admin", "user", "reader"])
async def test_each_role_signs_in_and_lands_on_the_dashboard(console: Console, role: str) -> None:
    async with console.browser(role) as http:
        page = await http.get("/admin")

    assert page.status_code == 200
    assert f'{role} <span class="role">({role})</span>' in page.text
    assert 'data-server="tools"' in page.text


async def test_the_session_cookie_is_http_only_lax_and_scoped_to_the_console(
    console: Console,
) -> None:
    async with console.browser() as http:
        start = await http.get("/admin", follow_redirects=True)
        consent = await submit(http, start, username="user", password=PASSWORD)
        back = await submit(http, consent, decision="approve")
        landed = await http.get(back.headers["location"])

    cookie = next(
        value
        for name, value in landed.headers.multi_items()
        if name == "set-cookie" and value.startswith(f"{SESSION_COOKIE}=")
    ).lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/admin" in cookie
    assert "secure" not in cookie  # served over http here; https would add it


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/admin", "/\\evil.example", "/api/v1/mcp/registry"],
)
async def test_the_return_address_never_leaves_the_console(console: Console, target: str) -> None:
    async with console.browser() as http:
        await http.get("/admin/signin", params={"next": target})  # sets the flow's cookie
        start = await http.get("/admin/signin", params={"next": target}, follow_redirects=True)
        consent = await submit(http, start, username="user", password=PASSWORD)
        back = await submit(http, consent, decision="approve")
        landed = await http.get(back.headers["location"])

    assert landed.status_code == 303
    assert landed.headers["location"] == "/admin"


def test_safe_next_keeps_a_console_path_with_its_query() -> None:
    assert safe_next("/admin/audit?server=tools") == "/admin/audit?server=tools"
    assert safe_next("/adminx") == "/admin"


async def test_a_tampered_session_cookie_counts_as_no_session(console: Console) -> None:
    async with console.browser("admin") as http:
        value = http.cookies[SESSION_COOKIE]
        payload, mac = value.split(".")
        http.cookies.clear()
        http.cookies.set(SESSION_COOKIE, f"{payload[:-2]}AA.{mac}")
        answer = await http.get("/admin")

    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/admin/signin")


async def test_a_callback_without_the_browsers_state_is_refused(console: Console) -> None:
    async with console.browser() as http:
        await http.get("/admin/signin")
        answer = await http.get("/admin/callback", params={"code": "x", "state": "forged"})

    assert answer.status_code == 400
    assert 'data-error="refused"' in answer.text


async def test_sign_out_needs_the_csrf_token(console: Console) -> None:
    async with console.browser("user") as http:
        refused = await http.post("/admin/signout", data={"csrf": "forged"})
        still = await http.get("/admin")

    assert refused.status_code == 403
    assert 'data-error="csrf"' in refused.text
    assert still.status_code == 200


async def test_sign_out_ends_the_session_and_a_kept_copy_of_the_cookie(console: Console) -> None:
    async with console.browser("user") as http:
        kept = http.cookies[SESSION_COOKIE]
        page = await http.get("/admin")
        out = await http.post("/admin/signout", data={"csrf": csrf_of(page)})
        http.cookies.clear()
        http.cookies.set(SESSION_COOKIE, kept)
        after = await http.get("/admin")

    assert out.status_code == 200
    assert 'data-state="signed-out"' in out.text
    assert after.status_code == 303


async def test_a_disabled_user_is_signed_out_at_the_next_request(console: Console) -> None:
    async with console.browser("user") as http:
        await console.gateway.store.users.set_disabled("user", True)
        answer = await http.get("/admin")

    assert answer.status_code == 303


async def test_a_second_sign_in_in_the_same_browser_goes_straight_back(console: Console) -> None:
    async with console.browser("reader") as http:
        answer = await http.get("/admin/signin", params={"next": "/admin/usage"})

    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/usage"
