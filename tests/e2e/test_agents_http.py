"""The agents API end to end: a real Atrium (``atrium init`` + ``atrium start``: the gateway and
the built-in ``atrium`` server), a model API on loopback speaking Chat Completions, a token got
by the OAuth flow as a client gets it (the admin signs in and allows access, the resource is
the agents API), and plain HTTP: the run's server-sent events are parsed by hand.

The agent's tool call reaches the hosted server through the gateway as the token's user, so the
audit names that user and marks the call in-app.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import OpenAIChatFake, text, tool_call
from tests.ai.sse import Event, sse_events
from tests.auth.flow import (
    Browser,
    Pkce,
    authorize_url,
    bearer,
    exchange_code,
    jwt_claims,
    register_client,
)
from tests.e2e.instance import Instance, started_instance
from tests.polling import wait_until

PLAYBOOKS = "mcp__atrium__list_playbooks"
ADMIN_SCOPES = "admin user tools:read tools:write"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    # The gateway reads the model API key from its own environment when a run starts.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VARIABLE, "sk-test")
        with started_instance(tmp_path_factory.mktemp("agents-http") / "project") as running:
            yield running


@pytest.fixture(scope="module")
def token(instance: Instance) -> str:
    """The admin's access token for the agents API, by the authorization code flow."""
    return asyncio.run(_signed_in(instance, resource=f"{instance.base}/api/v1/agents"))


async def _signed_in(instance: Instance, *, resource: str) -> str:
    async with httpx2.AsyncClient(timeout=30) as http, Browser.open(instance.base) as browser:
        client = await register_client(http, instance.base)
        pkce = Pkce.new()
        url = authorize_url(
            instance.base, client["client_id"], pkce, scope=ADMIN_SCOPES, resource=resource
        )
        back = await browser.consent_redirect(url, "admin", instance.password)
        answer = await exchange_code(
            http, instance.base, client["client_id"], back["code"], pkce.verifier
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


def agents_url(instance: Instance, path: str = "") -> str:
    return f"{instance.base}/api/v1/agents{path}"


def post_message(instance: Instance, token: str, body: dict[str, Any]) -> list[Event]:
    with httpx2.stream(
        "POST",
        agents_url(instance, "/helper/messages"),
        json=body,
        headers=bearer(token),
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response.iter_lines())


def collapsed(events: list[Event]) -> list[str]:
    """The event names, each run of text pieces as one ``text``."""
    names: list[str] = []
    for name, _ in events:
        if not (name == "text" and names and names[-1] == "text"):
            names.append(name)
    return names


def _tool_audit(instance: Instance, subject: str) -> list[dict[str, Any]]:
    records = json.loads(instance.atrium("infra", "logs", "request", "list", "--json", "-n", "50"))
    return [r for r in records if r.get("tool") == "list_playbooks" and r["subject"] == subject]


def test_a_run_over_http_calls_a_hosted_tool_and_its_conversation_continues(
    instance: Instance, token: str
) -> None:
    assert jwt_claims(token)["aud"] == agents_url(instance)
    script = [tool_call(PLAYBOOKS, {}), text("There are no playbooks yet."), text("Still none.")]
    with OpenAIChatFake(script) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper", allowed_tools=["mcp__atrium__*"])
        events = post_message(instance, token, {"message": "Which playbooks are there?"})
        conversation_id = events[0][1]["conversation_id"]
        again = post_message(
            instance, token, {"message": "And now?", "conversation_id": conversation_id}
        )
        history = fake.requests[2].body["messages"]

    # A turn's usage is known when its stream ends, before its tool calls run.
    assert collapsed(events) == [
        "started", "usage", "tool_started", "tool_finished", "text", "usage", "finished"
    ]  # fmt: skip
    started, finished = events[0][1], events[-1][1]
    assert PLAYBOOKS in started["tools"]
    assert started["servers"]["atrium"] is None  # connected
    (tool_finished,) = [data for name, data in events if name == "tool_finished"]
    assert (tool_finished["name"], tool_finished["ok"]) == (PLAYBOOKS, True)
    assert (finished["text"], finished["tool_calls"]) == ("There are no playbooks yet.", 1)
    assert again[-1][1]["text"] == "Still none."
    # The second run's model request carries the whole conversation, the tool's part included.
    roles = [m["role"] for m in history if m["role"] != "system"]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]

    shown = httpx2.get(agents_url(instance, f"/conversations/{conversation_id}"),
                       headers=bearer(token), timeout=10).json()  # fmt: skip
    messages = shown["messages"]
    assert [m["role"] for m in messages] == [
        "user", "assistant", "tool", "assistant", "user", "assistant"
    ]  # fmt: skip
    assert messages[1]["tool_calls"][0]["name"] == PLAYBOOKS
    assert messages[2]["name"] == PLAYBOOKS
    assert messages[2]["is_error"] is False
    listed = httpx2.get(agents_url(instance, "/conversations"), headers=bearer(token), timeout=10)
    assert conversation_id in [c["id"] for c in listed.json()["conversations"]]
    url = agents_url(instance, f"/conversations/{conversation_id}")
    assert httpx2.delete(url, headers=bearer(token), timeout=10).status_code == 204
    assert httpx2.get(url, headers=bearer(token), timeout=10).status_code == 404

    subject = jwt_claims(token)["sub"]
    (call, *_) = wait_until(lambda: _tool_audit(instance, subject), what="the audited tool call")
    assert (call["origin"], call["client_id"], call["outcome"]) == ("in-app", "atrium-agents", "ok")


def test_a_client_finds_the_authorization_server_from_the_401(instance: Instance) -> None:
    refused = httpx2.get(agents_url(instance), timeout=10)

    assert refused.status_code == 401
    found = re.search(r'resource_metadata="([^"]+)"', refused.headers["www-authenticate"])
    assert found, refused.headers["www-authenticate"]
    metadata = httpx2.get(found[1], timeout=10).json()
    assert metadata["resource"] == agents_url(instance)
    (issuer,) = metadata["authorization_servers"]
    assert httpx2.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).is_success


def test_a_token_for_the_hosted_server_does_not_open_the_agents_api(instance: Instance) -> None:
    hosted = instance.atrium("admin", "token", "issue", "--user", "admin", "--server", "atrium")

    response = httpx2.get(agents_url(instance), headers=bearer(hosted.strip()), timeout=10)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_the_client_going_away_stops_the_run(instance: Instance, token: str) -> None:
    with OpenAIChatFake([text("Let me think about that", stall=True)]) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper", allowed_tools=[])
        with httpx2.stream(
            "POST",
            agents_url(instance, "/helper/messages"),
            json={"message": "Think"},
            headers=bearer(token),
            timeout=60,
        ) as response:
            for line in response.iter_lines():
                if line == "event: text":
                    break
        wait_until(lambda: fake.abandoned == 1, what="the model stream to be abandoned")
