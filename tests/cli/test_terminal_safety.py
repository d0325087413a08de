"""What outsiders wrote reaches the operator's terminal as text, never as terminal commands.

An attacker without a token can still name a tool (the refusal is audited), a client can pick
its name, a backend writes its logs and answers: each of them tries here to clear the screen,
move the cursor and forge a line of what ``atrium`` prints, through the real gateway and the
real ``atrium`` command.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx2
import pytest
from mcp.types import CallToolResult, TextContent

from atrium.cli.context import CliState
from atrium.cli.toolview import error_text, print_result
from atrium.settings import load_settings
from atrium.store import ClientRecord, Store
from atrium.store.audit import AuditEvent
from tests.cli.helpers import CliResult, run_atrium
from tests.gateway.helpers import call_body, modern_headers, running_gateway, server_record
from tests.processes import free_port

# Clear the screen, go home, write a row of the request list, then a line of its own; ring the
# bell; CSI in its one-byte C1 form; right-to-left override.
HOSTILE = "\x1b[2J\x1b[1;1Hatrium  tools/call  ok  200\nfake line\r\nfake row\x07\x9b31m\u202eevil"
# Every character a terminal acts on, but the newlines a table's own layout is made of.
_ACTING = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def assert_harmless(output: str) -> None:
    assert not _ACTING.search(output), f"a character that acts on the terminal: {output!r}"
    forged = [line for line in output.splitlines() if line.lstrip().startswith("fake")]
    assert not forged, f"a line the outsider wrote: {forged!r}"


def atrium(folder: Path, *args: str) -> CliResult:
    result = run_atrium("--project", str(folder), *args)
    assert result.exit_code == 0, result.stderr
    return result


async def refused_call(folder: Path, tool: str) -> str:
    """A ``tools/call`` of ``tool`` without a token, through a gateway over ``folder``'s
    store, to a server that wants one; the request id of its 401."""
    settings = load_settings(folder, environ={})
    locked = server_record("locked", {"port": free_port(), "oauth": {"required": True}})
    async with await Store.open(settings) as store:
        await store.servers.save([locked])
        async with running_gateway(settings, store) as gateway, httpx2.AsyncClient() as http:
            response = await http.post(
                gateway.url("locked"), content=call_body(tool), headers=modern_headers("tools/call")
            )
            assert response.status_code == 401
            request_id = response.headers["x-request-id"]
            await gateway.audit(request_id)
    return request_id


def test_a_tool_name_sent_to_a_401_is_listed_as_text(tmp_path: Path) -> None:
    request_id = asyncio.run(refused_call(tmp_path, HOSTILE))

    result = atrium(tmp_path, "infra", "logs", "request", "list")

    assert_harmless(result.stdout)
    (row,) = [line for line in result.stdout.splitlines() if request_id in line]
    assert "locked" in row
    assert "\\x1b[2J\\x1b[1;1Hatrium" in row  # still readable, on its own row


def store_audit(folder: Path, event: AuditEvent) -> None:
    async def add() -> None:
        async with await Store.open(load_settings(folder, environ={})) as store:
            await store.audit.add_many([event])

    asyncio.run(add())


def hostile_record(folder: Path) -> AuditEvent:
    """A record with outside text in every field a caller or a backend controls, as the store
    may hold it (written by an older gateway, or a path that does not refuse such names)."""
    event = AuditEvent(
        request_id="f" * 32,
        server="tools",
        method=HOSTILE,
        tool=HOSTILE,
        arguments={HOSTILE: HOSTILE, "nested": [HOSTILE]},
        outcome="tool_error",
        error=HOSTILE,
        caller=HOSTILE,
        client_id=HOSTILE,
    )
    store_audit(folder, event)
    return event


@pytest.mark.parametrize(
    "command",
    [
        ["infra", "logs", "request", "list"],
        ["infra", "logs", "audit", "f" * 32],
        ["infra", "logs", "audit", "f" * 32, "--full"],
        ["infra", "usage", "--by", "tool"],
        ["infra", "usage", "--by", "client"],
    ],
)
def test_outside_text_in_a_stored_record_is_printed_as_text(
    tmp_path: Path, command: list[str]
) -> None:
    hostile_record(tmp_path)

    result = atrium(tmp_path, *command)

    assert_harmless(result.stdout)
    assert "\\x1b[2J" in result.stdout


def test_json_output_escapes_outside_text_and_gives_it_back_unchanged(tmp_path: Path) -> None:
    event = hostile_record(tmp_path)

    listed = atrium(tmp_path, "infra", "logs", "request", "list", "--json")
    full = atrium(tmp_path, "infra", "logs", "audit", "f" * 32, "--full", "--json")

    assert_harmless(listed.stdout + full.stdout)
    assert json.loads(listed.stdout)[0]["tool"] == HOSTILE
    (record,) = json.loads(full.stdout)
    assert (record["method"], record["error"]) == (HOSTILE, HOSTILE)
    assert record["arguments"] == event.arguments


async def register_hostile_client(folder: Path) -> str:
    """Register a client named ``HOSTILE`` through the gateway; where registration refuses
    the name, put it in the store as a registration of before that check would have."""
    settings = load_settings(folder, environ={})
    body = {"redirect_uris": ["http://127.0.0.1:8976/callback"], "client_name": HOSTILE}
    async with await Store.open(settings) as store:
        async with running_gateway(settings, store) as gateway, httpx2.AsyncClient() as http:
            response = await http.post(f"{gateway.base}/api/v1/core/oauth/register", json=body)
        if response.status_code == 201:
            return str(response.json()["client_id"])
        assert response.status_code == 400
        await store.clients.add(
            ClientRecord(
                client_id="dyn_hostile",
                kind="dynamic",
                redirect_uris=list(body["redirect_uris"]),
                grant_types=["authorization_code", "refresh_token"],
                application_type="native",
                token_endpoint_auth_method="none",
                metadata=body,
                name=HOSTILE,
            )
        )
        return "dyn_hostile"


def test_a_client_name_is_listed_as_text(tmp_path: Path) -> None:
    client_id = asyncio.run(register_hostile_client(tmp_path))

    listed = atrium(tmp_path, "admin", "clients", "list")
    as_json = atrium(tmp_path, "admin", "clients", "list", "--json")
    shown = atrium(tmp_path, "admin", "clients", "show", client_id)

    assert_harmless(listed.stdout + as_json.stdout + shown.stdout)
    (row,) = [line for line in listed.stdout.splitlines() if client_id in line]
    assert "\\x1b[2J" in row
    assert [c["name"] for c in json.loads(as_json.stdout)] == [HOSTILE]
    assert json.loads(shown.stdout)["name"] == HOSTILE


def test_a_log_line_is_printed_as_text(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    stamp = "2026-01-01T00:00:00+00:00"
    (tmp_path / "logs/gateway.log").write_text(
        f"{stamp} WARNING atrium.gateway: tool {HOSTILE}\n", newline=""
    )

    result = atrium(tmp_path, "infra", "logs", "view", "--lines", "0")

    assert_harmless(result.stdout)
    assert "\\x1b[2J" in result.stdout


def test_what_a_tool_answers_is_printed_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    result = CallToolResult(content=[TextContent(type="text", text=f"line one\n{HOSTILE}")])

    print_result(CliState(), result)
    printed = capsys.readouterr().out

    assert not _ACTING.search(printed)
    assert printed.splitlines()[0] == "line one"  # a tool's own lines stay lines
    assert not _ACTING.search(error_text(result))
