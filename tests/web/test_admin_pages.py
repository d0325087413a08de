"""The users and OAuth clients pages (admins only): create, set a role, disable (which ends the
user's console session at once), clients with their last use, revoke, rotate a secret; and the
usage page's charts over time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from atrium.auth.hashing import token_hash
from atrium.auth.issuing import confidential_client
from atrium.store.audit import AuditEvent
from tests.web.conftest import XSS, Console, csrf_of

PAGES = ("/admin/users", "/admin/clients")


async def _post(http: httpx2.AsyncClient, page: str, action: str, **data: str) -> httpx2.Response:
    return await http.post(action, data={"csrf": csrf_of(await http.get(page)), **data})


@pytest.mark.parametrize("role", ["reader", "user"])
async def test_only_admins_see_or_use_the_users_and_clients_pages(
    console: Console, role: str
) -> None:
    async with console.browser(role) as http:
        pages = [await http.get(path) for path in PAGES]
        dashboard = await http.get("/admin")
        created = await _post(http, "/admin", "/admin/users", username="eve", role="admin")

    assert [page.status_code for page in pages] == [403, 403]
    assert 'href="/admin/users"' not in dashboard.text
    assert created.status_code == 403
    assert await console.gateway.store.users.by_username("eve") is None


async def test_an_admin_creates_a_user_who_signs_in_with_the_generated_password(
    console: Console,
) -> None:
    async with console.browser("admin") as http:
        created = await _post(http, "/admin/users", "/admin/users", username=XSS, role="reader")
        again = await _post(http, "/admin/users", "/admin/users", username=XSS, role="reader")
        (password,) = re.findall(
            r'data-field="password">Password \(shown once\): <code>([^<]+)<', created.text
        )

    assert created.status_code == 201
    assert XSS not in created.text
    assert again.status_code == 422
    assert password not in again.text
    record = await console.gateway.store.users.by_username(XSS)
    assert record is not None
    assert record.role == "reader"
    assert record.password_hash != password


async def test_a_form_without_the_csrf_token_changes_no_user(console: Console) -> None:
    async with console.browser("admin") as http:
        answer = await http.post("/admin/users/user/disable", data={})

    assert answer.status_code == 403
    assert 'data-error="csrf"' in answer.text
    user = await console.gateway.store.users.by_username("user")
    assert user is not None
    assert not user.disabled


async def test_a_disabled_user_is_signed_out_at_once_and_enabled_again(console: Console) -> None:
    async with console.browser("admin") as admin, console.browser("user") as user:
        disabled = await _post(admin, "/admin/users", "/admin/users/user/disable")
        after = await user.get("/admin/audit")
        listed = await admin.get("/admin/users")
        await _post(admin, "/admin/users", "/admin/users/user/enable")

    assert disabled.status_code == 303
    assert after.status_code == 303  # back to sign-in: the session has ended
    assert re.search(r'data-user="user">.*?data-field="state">disabled<', listed.text, re.S)
    record = await console.gateway.store.users.by_username("user")
    assert record is not None
    assert not record.disabled


async def test_a_role_change_takes_effect_on_the_next_page(console: Console) -> None:
    async with console.browser("admin") as admin:
        answer = await _post(admin, "/admin/users", "/admin/users/reader/role", role="admin")
    async with console.browser("reader") as reader:
        page = await reader.get("/admin/users")

    assert answer.status_code == 303
    assert page.status_code == 200


async def test_an_admin_cannot_disable_or_demote_themselves(console: Console) -> None:
    async with console.browser("admin") as http:
        disabled = await _post(http, "/admin/users", "/admin/users/admin/disable")
        demoted = await _post(http, "/admin/users", "/admin/users/admin/role", role="user")
        unknown = await _post(http, "/admin/users", "/admin/users/admin/role", role="king")

    assert (disabled.status_code, demoted.status_code, unknown.status_code) == (409, 409, 422)


async def test_clients_show_their_last_use_and_are_rotated_and_revoked(console: Console) -> None:
    store = console.gateway.store
    record, secret = confidential_client("Billing <robot>", ["tools:read"], [])
    await store.clients.add(record)
    await store.clients.touch(record.client_id)
    async with console.browser("admin") as http:
        listed = await http.get("/admin/clients")
        rotated = await _post(
            http, "/admin/clients", f"/admin/clients/{record.client_id}/rotate", overlap="0"
        )
        revoked = await _post(http, "/admin/clients", f"/admin/clients/{record.client_id}/revoke")
        after = await http.get("/admin/clients")

    row = re.search(rf'data-client="{record.client_id}">.*?</tr>', listed.text, re.S)
    assert row is not None
    assert "Billing &lt;robot&gt;" in row[0]
    assert re.search(r'data-field="last-used">\d{4}-', row[0])
    (new_secret,) = re.findall(r'id="client-secret"><code>([^<]+)<', rotated.text)
    assert new_secret != secret
    stored = await store.clients.get(record.client_id)
    assert stored is not None
    assert stored.secret_hash == token_hash(new_secret)
    assert revoked.status_code == 303
    assert stored.revoked_at is not None
    assert re.search(
        rf'data-client="{record.client_id}">.*?data-field="state">revoked<', after.text, re.S
    )


async def test_the_usage_page_draws_calls_over_time_per_server_and_per_tool(
    console: Console,
) -> None:
    now = datetime.now(UTC)
    events = [
        AuditEvent(
            request_id=f"t{minute}",
            server="tools",
            method="tools/call",
            tool="echo" if minute % 2 else "peek",
            at=now - timedelta(minutes=minute),
            origin="in-app" if minute % 3 else "external",
        )
        for minute in range(1, 50)
    ]
    await console.gateway.store.audit.add_many(events)
    async with console.browser("admin") as http:
        servers = await http.get("/admin/usage", params={"window": "1h"})
        tools = await http.get("/admin/usage", params={"window": "1h", "server": "tools"})
        unknown = await http.get("/admin/usage", params={"server": "nowhere"})

    assert servers.text.count('class="series series-0"') == 3  # calls, errors, latency
    assert "Calls per server" in servers.text
    assert tools.text.count('<polyline class="series series-') == 6  # two tools, three charts
    assert 'class="in-app"' in tools.text
    assert unknown.status_code == 400
