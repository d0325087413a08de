"""The console's pages through a real gateway: what each role sees and may do (checked on the
server), CSRF, escaping, the security headers, try it through the gateway, the audit pages."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import httpx2
import pytest

from atrium.store.audit import AuditEvent
from atrium.web.security import CSP
from tests.web.conftest import XSS, Console, csrf_of


def _restart_forms(html: str) -> list[str]:
    return re.findall(r'action="(/admin/servers/[^"]+/restart)"', html)


@pytest.mark.parametrize("path", ["/admin", "/admin/static/console.css", "/admin/nowhere"])
async def test_every_console_response_carries_the_security_headers(
    console: Console, path: str
) -> None:
    async with console.browser("admin") as http:
        answer = await http.get(path)

    assert answer.headers["content-security-policy"] == CSP
    assert "default-src 'self'" in CSP
    assert "unsafe-inline" not in CSP
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "same-origin"


async def test_pages_have_no_inline_script_or_style(console: Console) -> None:
    async with console.browser("admin") as http:
        paths = ("/admin", "/admin/servers/tools", "/admin/audit", "/admin/usage", "/admin/agents")
        pages = [await http.get(p) for p in (*paths, "/admin/users", "/admin/clients")]

    for page in pages:
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []
        assert "<style" not in page.text
        assert " style=" not in page.text


async def test_the_dashboard_shows_only_servers_displayed_in_the_web(console: Console) -> None:
    async with console.browser("reader") as http:
        page = await http.get("/admin")
        hidden = await http.get("/admin/servers/hidden")

    assert re.findall(r'data-server="([^"]+)"', page.text) == ["marked", "tools"]
    assert hidden.status_code == 404
    assert 'data-error="not_found"' in hidden.text


async def test_a_server_description_with_markup_is_shown_as_text(console: Console) -> None:
    async with console.browser("user") as http:
        dashboard = await http.get("/admin")
        server = await http.get("/admin/servers/marked")

    for page in (dashboard, server):
        assert XSS not in page.text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text


async def test_only_admins_see_the_controls(console: Console) -> None:
    async with console.browser("admin") as admin, console.browser("reader") as reader:
        as_admin = await admin.get("/admin/servers/tools")
        as_reader = await reader.get("/admin/servers/tools")

    assert _restart_forms(as_admin.text) == ["/admin/servers/tools/restart"]
    assert _restart_forms(as_reader.text) == []
    assert 'id="log"' in as_admin.text
    assert 'id="log"' not in as_reader.text


@pytest.mark.parametrize("role", ["reader", "user"])
async def test_a_non_admin_posting_the_restart_form_anyway_is_refused(
    console: Console, role: str
) -> None:
    async with console.browser(role) as http:
        page = await http.get("/admin/servers/tools")
        answer = await http.post("/admin/servers/tools/restart", data={"csrf": csrf_of(page)})
        log = await http.get("/admin/servers/tools/log")

    assert answer.status_code == 403
    assert 'data-error="forbidden"' in answer.text
    assert log.status_code == 403


async def test_an_admin_post_without_the_csrf_token_is_refused(console: Console) -> None:
    async with console.browser("admin") as http:
        answer = await http.post("/admin/servers/tools/restart", data={})

    assert answer.status_code == 403
    assert 'data-error="csrf"' in answer.text


async def test_a_restart_without_a_supervisor_on_this_host_says_so(console: Console) -> None:
    async with console.browser("admin") as http:
        page = await http.get("/admin/servers/tools")
        answer = await http.post("/admin/servers/tools/restart", data={"csrf": csrf_of(page)})

    assert answer.status_code == 409
    assert 'data-error="conflict"' in answer.text


async def _try(http: httpx2.AsyncClient, tool: str, **fields: str) -> httpx2.Response:
    page = await http.get("/admin/servers/tools")
    data = {"csrf": csrf_of(page), **{f"arg.{k}": v for k, v in fields.items()}}
    return await http.post(f"/admin/servers/tools/tools/{tool}", data=data)


async def test_try_it_calls_the_tool_through_the_gateway_as_the_user(console: Console) -> None:
    async with console.browser("user") as http:
        answer = await _try(http, "echo", text=XSS)

    assert answer.status_code == 200
    assert 'data-outcome="ok"' in answer.text
    assert XSS not in answer.text
    (request_id,) = re.findall(r'href="/admin/audit/([0-9a-f]+)"', answer.text)
    (record,) = await console.gateway.audit(request_id)
    assert (record.tool, record.subject) == ("echo", console.users["user"].id)
    assert (record.client_id, record.origin) == ("atrium-console", "in-app")


async def test_the_audit_record_page_shows_the_arguments_escaped(console: Console) -> None:
    async with console.browser("user") as http:
        answer = await _try(http, "echo", text=XSS)
        (request_id,) = re.findall(r'href="/admin/audit/([0-9a-f]+)"', answer.text)
        await console.gateway.audit(request_id)
        record = await http.get(f"/admin/audit/{request_id}")

    assert record.status_code == 200
    assert XSS not in record.text
    assert "&lt;script&gt;" in record.text


async def test_a_reader_is_offered_and_may_call_only_read_only_tools(console: Console) -> None:
    async with console.browser("reader") as http:
        tools = await http.get("/admin/servers/tools/tools")
        peek = await _try(http, "peek")
        echo = await _try(http, "echo", text="hi")

    assert re.findall(r'data-tool="([^"]+)"', tools.text) == ["peek"]
    assert 'data-outcome="ok"' in peek.text
    assert echo.status_code == 404


async def test_a_form_value_that_does_not_fit_the_schema_is_named(console: Console) -> None:
    async with console.browser("user") as http:
        answer = await _try(http, "slow", seconds="soon")

    assert answer.status_code == 422
    assert 'data-error="arguments"' in answer.text
    assert "seconds:" in answer.text


async def test_the_cursor_link_decodes_to_the_servers_entry(console: Console) -> None:
    async with console.browser("reader") as http:
        page = await http.get("/admin/servers/tools")

    (link,) = re.findall(r'id="add-to-cursor" href="([^"]+)"', page.text)
    link = link.replace("&amp;", "&")
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (parts.scheme, parts.netloc, parts.path) == (
        "cursor",
        "anysphere.cursor-deeplink",
        "/mcp/install",
    )
    assert query["name"] == "tools"
    assert json.loads(base64.b64decode(query["config"])) == {
        "url": f"{console.base}/api/v1/mcp/tools/mcp"
    }
    (vscode,) = re.findall(r'id="add-to-vscode" href="vscode:mcp/install\?([^"]+)"', page.text)
    assert json.loads(unquote(vscode)) == {
        "name": "tools",
        "type": "http",
        "url": f"{console.base}/api/v1/mcp/tools/mcp",
    }


def _event(server: str, subject: str, minutes_ago: int, tool: str = "echo") -> AuditEvent:
    return AuditEvent(
        request_id=f"r{minutes_ago:06d}{subject[:4]}",
        server=server,
        method="tools/call",
        tool=tool,
        subject=subject,
        caller=subject,
        at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )


async def test_the_audit_shows_a_user_only_their_own_records(console: Console) -> None:
    users = console.users
    await console.gateway.store.audit.add_many(
        [_event("tools", users["user"].id, 1), _event("tools", users["admin"].id, 2)]
    )
    async with console.browser("user") as user, console.browser("admin") as admin:
        mine = await user.get("/admin/audit")
        everyone = await admin.get("/admin/audit")
        other = await user.get(f"/admin/audit/r000002{users['admin'].id[:4]}")

    assert re.findall(r'data-request="([^"]+)"', mine.text) == [f"r000001{users['user'].id[:4]}"]
    assert len(re.findall(r'data-request="', everyone.text)) == 2
    assert other.status_code == 404


async def test_the_audit_pages_by_keyset_and_keeps_the_filters(console: Console) -> None:
    subject = console.users["admin"].id
    events = [
        _event("tools", subject, minute, "peek" if minute % 2 else "echo")
        for minute in range(120, 0, -1)  # oldest first, as the gateway writes them
    ]
    await console.gateway.store.audit.add_many(events)
    async with console.browser("admin") as http:
        first = await http.get("/admin/audit", params={"tool": "peek"})
        (following,) = re.findall(r'rel="next" href="([^"]+)"', first.text)
        second = await http.get(following.replace("&amp;", "&"))

    shown = re.findall(r'data-request="r(\d{6})', first.text) + re.findall(
        r'data-request="r(\d{6})', second.text
    )
    assert [int(minute) for minute in shown] == list(range(1, 121, 2))
    assert 'rel="next"' not in second.text


async def test_a_bad_audit_filter_is_named(console: Console) -> None:
    async with console.browser("admin") as http:
        answer = await http.get("/admin/audit", params={"since": "yesterday"})

    assert answer.status_code == 400
    assert 'data-error="bad_filter"' in answer.text


async def test_the_usage_page_draws_its_charts_as_svg(console: Console) -> None:
    await console.gateway.store.audit.add_many([_event("tools", console.users["admin"].id, 3)])
    async with console.browser("admin") as http:
        page = await http.get("/admin/usage", params={"window": "1h"})

    assert page.status_code == 200
    assert page.text.count("<svg") == 6  # per server, per tool, and four over time
    assert "tools/echo" in page.text


async def test_the_event_stream_sends_the_servers_rows(console: Console) -> None:
    async with console.browser("reader") as http, http.stream("GET", "/admin/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = []
        async for line in stream.aiter_lines():
            lines.append(line)
            if line == "" and len(lines) > 1:
                break

    assert lines[0] == "event: update"
    assert any('data-server="tools"' in line for line in lines)
