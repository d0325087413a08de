"""Secrets end to end (issue 14): ``atrium start`` with the marketplace and a server of the
project whose env takes a stored secret (``{$secret: NAME}``), called through the gateway with
OAuth tokens of two users (the first admin and ``bob``), then THE LEAK TEST: after a full run
(set, rotate, reveal, use in a server's env, a rotation of the key, refused calls carrying a
value) no value is in any file of the project (logs/, .atrium/ and its SQLite database
included) nor in any row of any table, the audit trail first."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from mcp.types import CallToolResult, TextContent
from sqlalchemy import func, select

from atrium.settings import load_settings
from atrium.store import Store
from atrium.store.tables import audit_events, metadata
from tests.e2e.instance import Instance, call_tool, ok, started_instance
from tests.polling import until
from tests.processes import free_port

SECRET = "LEAK_TEST_TOKEN"
KEYED_SERVER = '''\
"""A server of the project that reads the secret it is given, and shows only its digest."""
import hashlib
import os
import sys

from atrium import AtriumServer, ToolAnnotations, run

server = AtriumServer("keyed", version="1.0.0")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def token_digest() -> str:
    """SHA-256 of API_TOKEN as this process got it: proof it arrived, without showing it."""
    return hashlib.sha256(os.environ.get("API_TOKEN", "").encode()).hexdigest()


if __name__ == "__main__":
    run(server, sys.argv[1:])
'''
# Every value sent in this module, and its random part's head and tail, which an error that
# shortens what it quotes (pydantic's ``input_value='refused-1a2b...9f8e'``) would still show:
# THE LEAK TEST looks for each of them.
SENT: list[str] = []


def new_value(label: str) -> str:
    random = secrets.token_hex(16)
    SENT.extend([f"{label}-{random}", random[:10], random[-10:]])
    return f"{label}-{random}"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    code = tmp_path_factory.mktemp("keyed") / "keyed_server.py"
    code.write_text(KEYED_SERVER)
    command = [sys.executable, str(code), "--port", "{port}", "--project", "{project}"]
    keyed = {
        "command": command,
        "port": free_port(),
        "oauth": {"required": True, "scopes": ["admin"], "audience": "mcp"},
        "env": {"API_TOKEN": {"$secret": SECRET}},
    }
    yaml = json.dumps({"mcp_servers": {"keyed": keyed}})
    project = tmp_path_factory.mktemp("secrets") / "project"
    with started_instance(
        project, servers={"keyed": yaml}, builtins=("atrium", "marketplace")
    ) as started:
        started.atrium("admin", "users", "create", "bob", "--role", "user")
        yield started


def token(instance: Instance, user: str, server: str = "marketplace") -> str:
    issued = instance.atrium("admin", "token", "issue", "--user", user, "--server", server)
    return issued.strip()


async def call(
    instance: Instance,
    bearer: str,
    tool: str,
    arguments: dict[str, Any],
    server: str = "marketplace",
) -> CallToolResult:
    return await call_tool(instance, bearer, server, tool, **arguments)


content = ok


def digest_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    assert not result.is_error, block.text
    return block.text


def restart(instance: Instance, name: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "atrium", "--project", str(instance.project)]
    return subprocess.run(
        [*argv, "infra", "services", "restart", name],
        env=instance.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_each_user_sees_only_their_own_secrets_and_only_an_admin_reveals(
    instance: Instance,
) -> None:
    admin, bob = token(instance, "admin"), token(instance, "bob")
    admins_value, bobs_value = new_value("admin-own"), new_value("bob-own")
    await call(
        instance, admin, "manage_secrets", {"action": "set", "name": "MINE", "value": admins_value}
    )
    bobs = await call(
        instance, bob, "manage_secrets", {"action": "set", "name": "MINE", "value": bobs_value}
    )

    bobs_list = await call(instance, bob, "get_secrets", {})
    bobs_reveal = await call(instance, bob, "get_secrets", {"reveal": True})
    bobs_project = await call(instance, bob, "get_secrets", {"scope": "project"})
    admins_reveal = await call(instance, admin, "get_secrets", {"reveal": True, "names": ["MINE"]})

    assert content(bobs)["version"] == 1
    assert [(s["name"], s["value"]) for s in content(bobs_list)["secrets"]] == [("MINE", None)]
    assert bobs_reveal.is_error
    assert bobs_project.is_error
    assert [s["value"] for s in content(admins_reveal)["secrets"]] == [admins_value]


async def test_a_project_secret_reaches_a_server_env_and_survives_a_key_rotation(
    instance: Instance,
) -> None:
    admin, keyed = token(instance, "admin"), token(instance, "admin", "keyed")
    first, second = new_value("first"), new_value("rotated")
    # The secret is not stored yet: the server could not start, and says why.
    failed = restart(instance, "keyed")
    assert failed.returncode != 0
    assert "mcp_servers.keyed.env.API_TOKEN" in failed.stderr
    assert SECRET in failed.stderr

    project = {"name": SECRET, "scope": "project"}
    stored = await call(
        instance, admin, "manage_secrets", {"action": "set", "value": first, **project}
    )
    rotated = await call(
        instance, admin, "manage_secrets", {"action": "rotate", "value": second, **project}
    )
    revealed = await call(
        instance, admin, "get_secrets", {"reveal": True, "scope": "project", "names": [SECRET]}
    )
    started = restart(instance, "keyed")
    used = await call(instance, keyed, "token_digest", {}, server="keyed")
    instance.atrium("admin", "keys", "rotate", "--secrets")
    after_rotation = await call(
        instance, admin, "get_secrets", {"reveal": True, "scope": "project", "names": [SECRET]}
    )
    restarted = restart(instance, "keyed")
    used_again = await call(instance, keyed, "token_digest", {}, server="keyed")

    assert (content(stored)["version"], content(rotated)["version"]) == (1, 2)
    assert [s["value"] for s in content(revealed)["secrets"]] == [second]
    assert started.returncode == 0, started.stderr
    assert restarted.returncode == 0, restarted.stderr
    expected = hashlib.sha256(second.encode()).hexdigest()
    assert digest_of(used) == expected == digest_of(used_again)
    assert [s["value"] for s in content(after_rotation)["secrets"]] == [second]


async def test_no_secret_value_is_in_any_file_or_any_row_after_a_full_run(
    instance: Instance,
) -> None:
    admin = token(instance, "admin")
    value, rotated = new_value("leak"), new_value("leak-rotated")
    refused, refused_too = new_value("refused"), new_value("refused")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("manage_secrets", {"action": "set", "name": "LEAK_CHECK", "value": value}),
        ("manage_secrets", {"action": "rotate", "name": "LEAK_CHECK", "value": rotated}),
        ("get_secrets", {"reveal": True}),
        # Refused with no action: pydantic, were it to refuse it, would quote the arguments.
        ("manage_secrets", {"name": "LEAK_CHECK", "value": refused}),
        ("manage_secrets", {"action": "delete", "name": "LEAK_CHECK", "value": refused_too}),
    ]
    before = await tool_calls(instance)
    results = [await call(instance, admin, tool, arguments) for tool, arguments in calls]
    assert [result.is_error for result in results] == [False, False, False, True, True]
    # Nor is one in a refusal, which a caller (and a conversation that stores it) gets back.
    refusals = [json.dumps(result.model_dump(mode="json")) for result in results[3:]]
    assert [(text, sent) for text in refusals for sent in SENT if sent in text] == []
    marketplace_log = instance.project / "logs/mcp-marketplace.log"
    assert "revealed" in marketplace_log.read_text()

    rows = await every_row(instance, tool_calls_at_least=before + len(calls))

    leaks = [
        (str(path.relative_to(instance.project)), sent)
        for path in sorted(instance.project.rglob("*"))
        if path.is_file()
        for sent in SENT
        if sent.encode() in path.read_bytes()
    ]
    assert leaks == []
    assert [(row[0], sent) for row in rows for sent in SENT if sent in repr(row)] == []
    audited = [row for row in rows if row[0] == "audit_events" and "manage_secrets" in repr(row)]
    assert audited
    assert all("'value': '***'" in repr(row) for row in audited if "'value'" in repr(row))


async def tool_calls(instance: Instance) -> int:
    """How many ``tools/call`` of the marketplace the audit trail holds."""
    query = select(func.count()).where(
        audit_events.c.server == "marketplace", audit_events.c.method == "tools/call"
    )
    settings = load_settings(instance.project, instance.env)
    async with await Store.open(settings) as store, store.engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


async def every_row(instance: Instance, *, tool_calls_at_least: int) -> list[tuple[Any, ...]]:
    """Every row of every table, as ``(table, *columns)``, once the audit trail holds
    ``tool_calls_at_least`` calls of the marketplace (the gateway writes in batches, in order)."""

    async def written() -> bool:
        return await tool_calls(instance) >= tool_calls_at_least

    await until(written, what="the audit records of the calls", timeout_s=15)
    rows: list[tuple[Any, ...]] = []
    settings = load_settings(instance.project, instance.env)
    async with await Store.open(settings) as store, store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows.extend((table.name, *row) for row in await conn.execute(select(table)))
    return rows
