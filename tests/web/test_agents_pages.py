"""The agents pages through a real gateway: the agents and the user's conversations listed, a
run relayed from the console to the agents API as the signed-in user (events streamed, or the
transcript without script), tool calls reaching the backend through the gateway, and agent
output shown as text."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx2
import pytest

from atrium.settings import Settings
from atrium.store.audit import AuditRecord
from tests.ai.project import write_agent, write_ai_config
from tests.ai.providers_fake import OpenAIChatFake, text, tool_call
from tests.ai.sse import sse_events
from tests.polling import until
from tests.web.conftest import XSS, Console, csrf_of

ECHO = "mcp__tools__echo"


@pytest.fixture
def model(console: Console, settings: Settings) -> Iterator[OpenAIChatFake]:
    """A model that calls the backend's echo tool once, then answers with markup."""
    project = settings.project_dir
    with OpenAIChatFake([tool_call(ECHO, {"text": "hi"}), text(f"Done {XSS}")]) as fake:
        write_ai_config(project, fake)
        write_agent(project, "helper", allowed_tools=[ECHO], servers=["tools"])
        yield fake


async def _calls(console: Console, tool: str) -> list[AuditRecord] | None:
    records = await console.gateway.store.audit.list_recent(50, server="tools")
    return [record for record in records if record.tool == tool] or None


async def _send(http: httpx2.AsyncClient, **extra: str) -> httpx2.Response:
    page = await http.get("/admin/agents/helper")
    data = {"csrf": csrf_of(page), "message": "Echo hi, please", **extra}
    return await http.post(
        "/admin/agents/helper/messages", data=data, headers={"Accept": "text/event-stream"}
    )


async def test_the_agents_page_lists_the_projects_agents(
    console: Console, model: OpenAIChatFake
) -> None:
    async with console.browser("reader") as http:
        page = await http.get("/admin/agents")

    assert page.status_code == 200
    assert re.findall(r'data-agent="([^"]+)"', page.text) == ["helper"]


async def test_a_run_streams_its_tool_calls_and_text_as_the_user(
    console: Console, model: OpenAIChatFake
) -> None:
    async with console.browser("user") as http:
        answer = await _send(http)

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text.splitlines())
    names = [name for name, _ in events]
    assert names[0] == "started"
    assert names[-1] == "finished"
    assert names.index("tool_started") < names.index("tool_finished") < names.index("text")
    finished = dict(events)["tool_finished"]
    assert (finished["name"], finished["ok"]) == (ECHO, True)
    (record,) = await until(lambda: _calls(console, "echo"), what="the echo call's record")
    assert record.subject == console.users["user"].id
    assert record.origin == "in-app"


async def test_without_script_the_run_ends_on_its_transcript_shown_as_text(
    console: Console, model: OpenAIChatFake
) -> None:
    async with console.browser("user") as http:
        page = await http.get("/admin/agents/helper")
        answer = await http.post(
            "/admin/agents/helper/messages", data={"csrf": csrf_of(page), "message": "Hi"}
        )
        assert answer.status_code == 303, answer.text
        transcript = await http.get(answer.headers["location"])
        listed = await http.get("/admin/agents")

    assert await until(lambda: _calls(console, "echo"), what="the echo call's record")
    assert transcript.status_code == 200
    assert XSS not in transcript.text
    assert "Done &lt;script&gt;" in transcript.text
    conversation = answer.headers["location"].rsplit("/", 1)[1]
    assert re.findall(r'data-conversation="([^"]+)"', listed.text) == [conversation]


async def test_a_conversation_is_its_owners_alone(console: Console, model: OpenAIChatFake) -> None:
    async with console.browser("user") as user, console.browser("admin") as admin:
        events = sse_events((await _send(user)).text.splitlines())
        conversation = events[0][1]["conversation_id"]
        theirs = await admin.get(f"/admin/conversations/{conversation}")
        chat = await admin.get(f"/admin/agents/helper?conversation={conversation}")
        listed = await admin.get("/admin/agents")
        continued = await _send(admin, conversation_id=conversation)

    assert theirs.status_code == 404
    assert chat.status_code == 404
    assert 'data-conversation="' not in listed.text
    assert continued.status_code == 404
    assert 'data-error="not_found"' in continued.text


async def test_a_message_without_the_csrf_token_is_refused(
    console: Console, model: OpenAIChatFake
) -> None:
    async with console.browser("user") as http:
        answer = await http.post("/admin/agents/helper/messages", data={"message": "Hi"})

    assert answer.status_code == 403
    assert 'data-error="csrf"' in answer.text
    assert model.requests == []


async def test_an_unknown_agent_is_named(console: Console, model: OpenAIChatFake) -> None:
    async with console.browser("user") as http:
        page = await http.get("/admin/agents/nobody")

    assert page.status_code == 404
    assert 'data-error="not_found"' in page.text
