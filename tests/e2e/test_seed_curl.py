"""The seeds' ``curl`` examples, run as written (issue 15 §1): seed 000's "Test via HTTP" against
``atrium start``, with only the host, the port and a token added.

The seed posts a bare JSON-RPC request — no ``Accept``, no session, no protocol version — and
expects the tools and the tool's result printed. ``/jsonrpc`` (seed 003's plain JSON-RPC path)
answers the same, and the server cards carry seed 003's ``transport`` and ``auth``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.e2e.instance import Instance, started_instance

# Seed 000, "Test via HTTP", verbatim but for the URL's host and port.
LIST_TOOLS = """{
"jsonrpc": "2.0",
"method": "tools/list",
"id": 1
}"""
CALL_TOOL = """{
"jsonrpc": "2.0",
"method": "tools/call",
"params": {
"name": "list_playbooks",
"arguments": {}
},
"id": 1
}"""


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    project = tmp_path_factory.mktemp("seed-curl") / "project"
    with started_instance(project) as started:
        yield started


@pytest.fixture(scope="module")
def token(instance: Instance) -> str:
    return instance.atrium(
        "admin", "token", "issue", "--user", "admin", "--server", "atrium"
    ).strip()


def curl(url: str, body: str, token: str | None, *extra: str) -> tuple[dict[str, str], Any]:
    """The seed's command: ``curl URL -H "Content-Type: application/json" -d BODY``, plus the
    token; the response's headers and its JSON."""
    executable = shutil.which("curl")
    if executable is None:
        pytest.fail("curl is needed: apt-get install curl")
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    argv = [executable, "-sS", "-D", "-", url, "-H", "Content-Type: application/json", *auth]
    done = subprocess.run(
        [*argv, *extra, "-d", body], capture_output=True, text=True, timeout=60, check=True
    )
    head, _, text = done.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    headers[":status"] = lines[0].split()[1]
    return headers, json.loads(text) if text else None


def test_the_seeds_tools_list_prints_the_tools(instance: Instance, token: str) -> None:
    headers, answer = curl(instance.url("atrium"), LIST_TOOLS, token)

    assert (headers[":status"], headers["content-type"]) == ("200", "application/json")
    assert "mcp-session-id" not in headers
    assert answer["id"] == 1
    assert {"list_playbooks", "atrium"} <= {t["name"] for t in answer["result"]["tools"]}


def test_the_seeds_tools_call_prints_the_result(instance: Instance, token: str) -> None:
    _, answer = curl(instance.url("atrium"), CALL_TOOL, token)

    result = answer["result"]
    assert result.get("isError") is not True, result
    assert result["structuredContent"]["playbooks"]  # `atrium init` writes a few
    assert "playbook" in result["content"][0]["text"].lower()


def test_without_a_token_the_answer_says_how_to_get_one(instance: Instance) -> None:
    headers, answer = curl(instance.url("atrium"), LIST_TOOLS, None)

    assert headers[":status"] == "401"
    assert "resource_metadata=" in headers["www-authenticate"]
    assert answer["error"]["message"].startswith("unauthorized")


def test_a_batch_and_the_plain_jsonrpc_path(instance: Instance, token: str) -> None:
    second = CALL_TOOL.replace('"id": 1', '"id": 2')
    batch = f"[{LIST_TOOLS}, {second}]"
    url = instance.url("atrium").removesuffix("/mcp") + "/jsonrpc"

    _, answers = curl(instance.url("atrium"), batch, token)
    headers, plain = curl(url, CALL_TOOL, token)

    assert [a["id"] for a in answers] == [1, 2]
    assert answers[1]["result"]["structuredContent"]["playbooks"]
    assert headers["content-type"] == "application/json"
    assert plain["result"]["structuredContent"] == answers[1]["result"]["structuredContent"]


def test_the_cards_carry_the_seeds_transport_and_auth(instance: Instance) -> None:
    instance_card = httpx2.get(f"{instance.base}/.well-known/mcp/server-card.json").json()
    card = httpx2.get(instance.url("atrium") + "/server-card").json()

    for each in (instance_card, card):
        assert each["transport"] == {"type": "streamable-http", "url": instance.url("atrium")}
        auth = each["auth"]
        assert auth["type"] == "oauth2"
        assert auth["authorizationUrl"].startswith(instance.base)
        assert httpx2.post(auth["tokenUrl"], data={}).status_code == 400  # the token endpoint
        assert auth["scopes"]
