"""The skills and secrets pages through a real gateway to the real marketplace server (served
in this process on loopback, verifying the gateway's caller assertions): what each role may do,
an edit naming its version (and the conflict when another came first), the analysis, skill
bodies shown as text, secret values never in a page unless an admin reveals one (audited)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier, ensure_caller_keys
from atrium.servers.marketplace import create_server
from atrium.settings import Settings
from atrium.store.audit import AuditRecord
from tests.servers.helpers import serving
from tests.servers.skills_client import skill_md
from tests.web.conftest import XSS, Console, csrf_of

VALUE = "s3cr3t-value-never-shown-0123"
NEW_VALUE = "s3cr3t-rotated-never-shown-9876"


@pytest.fixture
async def more_servers(settings: Settings) -> AsyncIterator[dict[str, dict[str, Any]]]:
    ensure_caller_keys(settings.state_dir, settings.issuer)
    verifier = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, "marketplace")
    async with serving(create_server(settings), verifier) as url:
        port = int(url.rsplit(":", 1)[1])
        yield {"marketplace": {"port": port, "oauth": {"required": True}}}


async def _post(http: httpx2.AsyncClient, page: str, action: str, **data: str) -> httpx2.Response:
    csrf = csrf_of(await http.get(page))
    return await http.post(action, data={"csrf": csrf, **data})


async def _create(http: httpx2.AsyncClient, content: str) -> httpx2.Response:
    return await _post(http, "/admin/skills", "/admin/skills", content=content)


async def test_a_user_creates_a_skill_and_sees_its_analysis(console: Console) -> None:
    body = f"Run `pdftotext`. {XSS}\nUse mcp__nowhere__tool.\n"
    async with console.browser("user") as http:
        created = await _create(http, skill_md(body=body))
        page = await http.get(created.headers["location"])
        listed = await http.get("/admin/skills")

    assert created.status_code == 303
    assert page.status_code == 200
    assert XSS not in page.text
    assert "&lt;script&gt;" in page.text
    assert re.findall(r'data-rule="([^"]+)"', page.text) == ["tool-unknown"]
    assert re.findall(r'data-skill="([^"]+)"', listed.text) == ["pdf-tools"]


async def test_an_edit_stores_the_next_version(console: Console) -> None:
    async with console.browser("user") as http:
        await _create(http, skill_md())
        edited = await _post(
            http,
            "/admin/skills/pdf-tools",
            "/admin/skills/pdf-tools",
            version="1",
            content=skill_md(body="Use `pdfplumber` now.\n"),
        )
        page = await http.get("/admin/skills/pdf-tools")

    assert edited.status_code == 303
    assert re.findall(r'data-field="version">(\d+)', page.text) == ["2"]
    assert "pdfplumber" in page.text


async def test_an_edit_of_a_version_no_longer_current_is_a_conflict_keeping_the_draft(
    console: Console,
) -> None:
    async with console.browser("user") as http:
        await _create(http, skill_md())
        stale = csrf_of(await http.get("/admin/skills/pdf-tools"))
        first = skill_md(body="First change.\n")
        second = skill_md(body="Second change, made from version 1.\n")
        await http.post(
            "/admin/skills/pdf-tools", data={"csrf": stale, "version": "1", "content": first}
        )
        late = await http.post(
            "/admin/skills/pdf-tools", data={"csrf": stale, "version": "1", "content": second}
        )

    assert late.status_code == 409
    assert 'data-error="conflict"' in late.text
    assert "Second change, made from version 1." in late.text
    assert 'name="version" value="2"' in late.text


@pytest.mark.parametrize("role", ["reader", "admin"])
async def test_only_its_owner_edits_a_skill(console: Console, role: str) -> None:
    async with console.browser("user") as owner, console.browser(role) as other:
        await _create(owner, skill_md())
        csrf = csrf_of(await other.get("/admin/skills"))
        answer = await other.post(
            "/admin/skills/pdf-tools",
            data={"csrf": csrf, "version": "1", "content": skill_md(body="Mine now.\n")},
        )

    # A reader changes nothing; an admin is not the owner: the marketplace has no such skill
    # of theirs (only its owner can change it).
    assert answer.status_code == (403 if role == "reader" else 404)


async def test_a_reader_is_offered_no_form_and_refused_when_posting_one(console: Console) -> None:
    async with console.browser("reader") as http:
        skills = await http.get("/admin/skills")
        secrets = await http.get("/admin/secrets")
        created = await _create(http, skill_md())
        stored = await _post(
            http, "/admin/secrets", "/admin/secrets", name="API_TOKEN", value=VALUE
        )

    assert 'method="post" action="/admin/skills"' not in skills.text
    assert 'method="post" action="/admin/secrets"' not in secrets.text
    assert (created.status_code, stored.status_code) == (403, 403)
    assert 'data-error="forbidden"' in created.text


async def test_skill_and_secret_forms_refuse_a_post_without_the_csrf_token(
    console: Console,
) -> None:
    async with console.browser("admin") as http:
        skill = await http.post("/admin/skills", data={"content": skill_md()})
        secret = await http.post("/admin/secrets", data={"name": "API_TOKEN", "value": VALUE})
        listed = await http.get("/admin/secrets")

    assert (skill.status_code, secret.status_code) == (403, 403)
    assert 'data-error="csrf"' in skill.text
    assert 'data-secret="' not in listed.text


async def test_a_secret_is_set_and_rotated_and_its_value_never_shown(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the MCP SDK's DEBUG lines hold every message it sends
    async with console.browser("user") as http:
        stored = await _post(
            http, "/admin/secrets", "/admin/secrets", name="API_TOKEN", value=VALUE
        )
        listed = await http.get(stored.headers["location"])
        rotated = await _post(
            http, "/admin/secrets", "/admin/secrets/API_TOKEN/rotate", value=NEW_VALUE
        )
        again = await http.get(rotated.headers["location"])
        twice = await _post(http, "/admin/secrets", "/admin/secrets", name="API_TOKEN", value=VALUE)

    assert (stored.status_code, rotated.status_code) == (303, 303)
    assert re.findall(r'data-secret="([^"]+)"', listed.text) == ["API_TOKEN"]
    assert re.findall(r'data-field="version">(\d+)', again.text) == ["2"]
    assert twice.status_code == 422
    for page in (listed, again, twice):
        assert VALUE not in page.text
        assert NEW_VALUE not in page.text
    assert VALUE not in caplog.text
    assert NEW_VALUE not in caplog.text
    records = await console.gateway.audit_of("marketplace", 3)
    assert all(VALUE not in str(r.arguments) and NEW_VALUE not in str(r.arguments) for r in records)


async def test_a_secret_of_the_project_is_for_admins(console: Console) -> None:
    async with console.browser("user") as user, console.browser("admin") as admin:
        refused = await user.get("/admin/secrets", params={"scope": "project"})
        stored = await _post(
            admin, "/admin/secrets", "/admin/secrets", name="DB_URL", value=VALUE, scope="project"
        )
        listed = await admin.get("/admin/secrets", params={"scope": "project"})

    assert refused.status_code == 403
    assert stored.status_code == 303
    assert re.findall(r'data-secret="([^"]+)"', listed.text) == ["DB_URL"]


async def test_only_an_admin_reveals_a_value_and_the_reveal_is_audited(console: Console) -> None:
    async with console.browser("user") as user, console.browser("admin") as admin:
        await _post(user, "/admin/secrets", "/admin/secrets", name="API_TOKEN", value=VALUE)
        refused = await _post(user, "/admin/secrets", "/admin/secrets/API_TOKEN/reveal")
        await _post(admin, "/admin/secrets", "/admin/secrets", name="API_TOKEN", value=NEW_VALUE)
        listed = await admin.get("/admin/secrets")
        revealed = await _post(admin, "/admin/secrets", "/admin/secrets/API_TOKEN/reveal")

    assert refused.status_code == 403
    assert VALUE not in refused.text
    assert NEW_VALUE not in listed.text
    assert revealed.status_code == 200
    assert NEW_VALUE in revealed.text
    assert VALUE not in revealed.text  # the user's secret stays theirs, even for an admin
    assert revealed.headers["cache-control"] == "no-store"
    admin_id = console.users["admin"].id

    def reveal(r: AuditRecord) -> bool:
        return r.tool == "get_secrets" and bool((r.arguments or {}).get("reveal"))

    records = await console.gateway.audit_once(
        "marketplace", lambda r: reveal(r) and r.subject == admin_id
    )
    assert [r.subject for r in records if reveal(r)] == [admin_id]
