"""The tool loop as a hostile model meets it: calls at once, calls that fail, tools it was not
given, arguments that are not JSON, calls past the round limit, a tool that never answers,
ids that repeat, results too long to send. Real adapters against their fakes, the npm
everything server as the tools (``tests.ai.conftest``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from atrium.ai.loop import (
    ANSWER_NOW,
    MAX_CALLS_PER_TURN,
    MAX_RESULT_CHARS,
    NOT_RUN,
    TOO_MANY,
    UNPARSED_CALL,
)
from atrium.ai.providers.messages import ToolResult
from atrium.ai.run_events import RunEvent, RunFinished, ToolFinished, ToolStarted
from atrium.ai.service import AgentService
from atrium.ai.transcript import STOPPED, from_stored
from tests.ai.conftest import (
    ALICE,
    ECHO,
    IMAGE,
    SLOW,
    ai_project,
    conversation_of,
    of_type,
    request_text,
    run,
    service_of,
    stdio_servers,
)
from tests.ai.providers_fake import (
    AnthropicFake,
    Call,
    GeminiFake,
    OpenAIChatFake,
    OpenAIResponsesFake,
    ProviderFake,
    Reply,
    malformed_call,
    text,
    tool_call,
    tool_calls,
)
from tests.polling import until

MCP_TINY_IMAGE_START = "iVBORw0KGgo"  # every PNG's first bytes, in base64

FAKES: dict[str, type[ProviderFake]] = {
    "anthropic": AnthropicFake,
    "openai": OpenAIResponsesFake,
    "openai-chat": OpenAIChatFake,
    "gemini": GeminiFake,
}


def chat_results(body: Any) -> list[str]:
    """The tool results a Chat Completions request carries, in order."""
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def chat_unanswered(body: Any) -> set[str]:
    """Ids of the calls of a Chat Completions history that no ``tool`` message answers."""
    called = {c["id"] for m in body["messages"] for c in m.get("tool_calls") or ()}
    return called - {m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"}


@pytest.mark.parametrize("kind", list(FAKES))
async def test_the_calls_of_one_turn_overlap_and_their_results_go_back_in_call_order(
    kind: str, tmp_path: Path
) -> None:
    # The first call is the slower: it ends last, and its result still comes first.
    slower = (SLOW, {"duration": 1.2, "steps": 1})
    faster = (SLOW, {"duration": 0.3, "steps": 1})
    with FAKES[kind]([tool_calls(slower, faster), text("Both done")]) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            events = await run(service, "Run both")
            stored = await service.store.conversations.messages(conversation_of(events))

    calls = [e for e in events if isinstance(e, ToolStarted | ToolFinished)]
    assert [e.type for e in calls] == ["tool_started"] * 2 + ["tool_finished"] * 2
    started = [e.call_id for e in of_type(calls, ToolStarted)]
    finished = [e.call_id for e in of_type(calls, ToolFinished)]
    assert finished == started[::-1]
    # Stored as each ends (a stop keeps what was done), read back in call order.
    assert [m.content["call_id"] for m in stored if m.role == "tool"] == finished
    results = [m for m in from_stored(stored) if isinstance(m, ToolResult)]
    assert [result.call_id for result in results] == started
    sent = request_text(fake.requests[1].body)
    assert sent.index("Duration: 1.2") < sent.index("Duration: 0.3")


async def test_a_failing_tool_an_unoffered_one_and_a_made_up_one_are_results_the_run_goes_on(
    tmp_path: Path,
) -> None:
    script = [
        tool_calls((ECHO, {}), ("mcp__everything__get-env", {}), ("mcp__nowhere__steal", {})),
        text("I could not."),
    ]
    with OpenAIChatFake(script) as fake:
        settings = ai_project(tmp_path, fake, allowed_tools=[ECHO])
        async with service_of(settings) as service:
            events = await run(service, "Try everything")

    offered = [t["function"]["name"] for t in fake.requests[0].body["tools"]]
    assert "mcp__everything__get-env" not in offered
    assert {e.name: e.ok for e in of_type(events, ToolFinished)} == {
        ECHO: False, "mcp__everything__get-env": False, "mcp__nowhere__steal": False,
    }  # fmt: skip
    failing, unoffered, made_up = chat_results(fake.requests[1].body)
    assert failing.startswith("Error: ")
    assert "-32602" in failing  # the server's own reason, as it gave it
    assert "there is no tool 'mcp__everything__get-env'" in unoffered
    assert "there is no tool 'mcp__nowhere__steal'" in made_up
    assert "HOME" not in request_text(fake.requests[1].body)  # get-env never ran
    assert of_type(events, RunFinished)[0].reason == "answered"


@pytest.mark.parametrize("kind", ["anthropic", "openai", "openai-chat"])
async def test_arguments_that_are_not_json_get_a_result_naming_the_problem(
    kind: str, tmp_path: Path
) -> None:
    with FAKES[kind]([malformed_call(ECHO, '{"message": "hi'), text("Fixed it.")]) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            events = await run(service, "Echo hi")

    assert of_type(events, ToolStarted)[0].arguments is None
    finished = of_type(events, ToolFinished)[0]
    assert not finished.ok
    assert finished.error is not None
    assert "not valid JSON" in finished.error
    assert "not valid JSON" in request_text(fake.requests[1].body)
    if kind == "anthropic":  # the Messages API takes a call's input as an object only
        assert fake.requests[1].body["messages"][1]["content"][0]["input"] == {}
    assert of_type(events, RunFinished)[0].text == "Fixed it."


async def test_a_gemini_call_it_could_not_form_gets_one_more_round_with_a_note(
    tmp_path: Path,
) -> None:
    with GeminiFake([malformed_call(ECHO), text("Here it is.")]) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            events = await run(service, "Echo Paris")
            stored = await service.store.conversations.messages(conversation_of(events))

    assert of_type(events, ToolStarted) == []
    retry = fake.requests[1].body
    # No model turn to keep: the note joins the user's turn.
    assert retry["contents"][-1]["parts"] == [{"text": "Echo Paris"}, {"text": UNPARSED_CALL}]
    assert "tools" in retry
    assert of_type(events, RunFinished)[0].reason == "answered"
    assert [m.role for m in stored] == ["user", "user", "assistant"]


async def test_a_gemini_retry_with_tool_rounds_left_still_offers_the_tools(tmp_path: Path) -> None:
    # One tool round used of two: the retry of a call Gemini could not form must let it call.
    script = [tool_call(ECHO, {"message": "a"}), malformed_call(ECHO), text("ok"), text("ok")]
    with GeminiFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake, max_tool_rounds=2)) as service:
            await run(service, "Echo twice")

    retry = fake.requests[2].body
    assert UNPARSED_CALL in request_text(retry)
    assert "tools" in retry, "the retry came with the answer-now note and no tools"


async def test_a_gemini_that_never_forms_its_call_is_not_asked_forever(tmp_path: Path) -> None:
    with GeminiFake([malformed_call(ECHO)] * 4) as fake:
        async with service_of(ai_project(tmp_path, fake, max_tool_rounds=2)) as service:
            events = await run(service, "Echo")

    assert events[-1].type == "finished"
    assert len(fake.requests) <= 3


async def test_past_max_tool_rounds_the_model_must_answer_and_calls_then_are_not_run(
    tmp_path: Path,
) -> None:
    script = [tool_call(ECHO, {"message": str(n)}) for n in range(3)] + [text("Fine.")]
    with OpenAIChatFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake, max_tool_rounds=2)) as service:
            events = await run(service, "Echo forever")
            conversation = conversation_of(events)
            stored = await service.store.conversations.messages(conversation)
            again = await run(service, "Stop now", conversation_id=conversation)

    last_chance = fake.requests[2].body
    assert "tools" in fake.requests[1].body
    assert last_chance["tool_choice"] == "none"  # defined (the history has calls), not callable
    assert last_chance["tools"] == fake.requests[1].body["tools"]
    assert last_chance["messages"][-1] == {"role": "user", "content": ANSWER_NOW.format(rounds=2)}
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.reason, finished.rounds, finished.tool_calls) == ("tool_rounds", 3, 2)
    assert len(of_type(events, ToolStarted)) == 2
    assert [m.content["content"] for m in stored if m.role == "tool"][-1] == NOT_RUN
    assert ANSWER_NOW.format(rounds=2) not in request_text(fake.requests[3].body)
    assert chat_unanswered(fake.requests[3].body) == set()
    assert again[-1].type == "finished"


async def test_every_anthropic_request_with_tool_blocks_defines_tools(tmp_path: Path) -> None:
    # The Messages API refuses a history with tool_use or tool_result blocks and no tools
    # ("Requests which include `tool_use` or `tool_result` blocks must define tools"): the
    # answer-now round must keep the tools and forbid their use (tool_choice none).
    script = [tool_call(ECHO, {"message": "1"}), tool_call(ECHO, {"message": "2"}), text("Done")]
    with AnthropicFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake, max_tool_rounds=2)) as service:
            await run(service, "Echo twice")

    for request in fake.requests:
        blocks = [
            block["type"]
            for message in request.body["messages"]
            if isinstance(message["content"], list)
            for block in message["content"]
        ]
        if {"tool_use", "tool_result"} & set(blocks):
            assert request.body.get("tools"), f"request {request.body['messages'][-1]}"


async def test_a_call_past_tool_call_s_is_an_error_result_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    script = [tool_call(SLOW, {"duration": 20, "steps": 20}), text("It timed out.")]
    with AnthropicFake(script) as fake:
        settings = ai_project(tmp_path, fake, timeouts={"tool_call_s": 1})
        async with service_of(settings) as service:
            events = await run(service, "Run long")

    finished = of_type(events, ToolFinished)[0]
    assert not finished.ok
    assert finished.error is not None
    assert "1 s" in finished.error
    assert 900 < finished.duration_ms < 10_000
    result = fake.requests[1].body["messages"][-1]["content"][0]
    assert (result["is_error"], result["content"]) == (True, finished.error)
    assert of_type(events, RunFinished)[0].text == "It timed out."


async def test_two_calls_with_one_id_each_get_their_own_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some OpenAI-compatible servers number calls per turn (or repeat one id): each result
    # must still be the one of its own call.
    monkeypatch.setattr("tests.ai.fake_openai_chat.call_id", lambda: "call_0")
    script = [
        tool_calls((ECHO, {"message": "one"}), (ECHO, {"message": "two"})),
        text("ok"),
        text("ok again"),
    ]
    with OpenAIChatFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            events = await run(service, "Echo one and two")
            again = await run(service, "Again", conversation_id=conversation_of(events))

    assert sorted(chat_results(fake.requests[1].body)) == ["Echo: one", "Echo: two"]
    # Read back from the store, each result still answers its own call (ids made unique).
    history = fake.requests[2].body["messages"]
    calls = {c["id"]: json.loads(c["function"]["arguments"])["message"]
             for m in history for c in m.get("tool_calls") or ()}  # fmt: skip
    answers = {m["tool_call_id"]: m["content"] for m in history if m["role"] == "tool"}
    assert sorted(calls) == ["call_0", "call_0#2"]
    assert {answers[id_] for id_ in calls} == {"Echo: one", "Echo: two"}
    assert all(answers[id_] == f"Echo: {calls[id_]}" for id_ in calls)
    assert again[-1].type == "finished"


async def test_a_flood_is_cut_and_an_image_is_named_not_sent(tmp_path: Path) -> None:
    flood = "x" * (MAX_RESULT_CHARS + 5_000)
    script = [tool_calls((ECHO, {"message": flood}), (IMAGE, {})), text("Seen.")]
    with OpenAIChatFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            events = await run(service, "Flood")
            stored = await service.store.conversations.messages(conversation_of(events))

    cut, image = chat_results(fake.requests[1].body)
    assert cut.startswith("Echo: xxx")
    assert cut.endswith("[... 5006 more characters not shown]")
    assert len(cut) < MAX_RESULT_CHARS + 100
    assert image.splitlines()[1] == "[image: image/png, not shown]"
    assert MCP_TINY_IMAGE_START not in request_text(fake.requests[1].body)
    assert [m.content["content"] for m in stored if m.role == "tool"] == [cut, image]


def reading(service: AgentService, message: str, seen: list[RunEvent]) -> asyncio.Task[None]:
    """A task reading a run's events into ``seen``, for a test to cancel."""

    async def read() -> None:
        async with service.start("helper", message, ALICE) as events:
            async for event in events:
                seen.append(event)

    return asyncio.create_task(read())


async def cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def seen_type(seen: list[RunEvent], kind: str, count: int = 1) -> None:
    await until(lambda: len([e for e in seen if e.type == kind]) >= count, what=f"{kind} x{count}")


@pytest.mark.parametrize("kind", list(FAKES))
async def test_cancelling_a_run_closes_its_stalled_model_stream(kind: str, tmp_path: Path) -> None:
    with FAKES[kind]([text("Hello there, world", stall=True)]) as fake:
        async with service_of(ai_project(tmp_path, fake, tools=False)) as service:
            seen: list[RunEvent] = []
            task = reading(service, "Hi", seen)
            await seen_type(seen, "text")
            await cancelled(task)
            await until(lambda: fake.abandoned == 1, what="the fake to see its stream left")
            stored = await service.store.conversations.messages(conversation_of(seen))

    assert [(m.role, m.content) for m in stored] == [("user", {"text": "Hi"})]


async def test_cancelling_a_run_ends_its_tool_call_and_the_conversation_repairs(
    tmp_path: Path,
) -> None:
    script = [tool_call(SLOW, {"duration": 30, "steps": 30}), text("Starting over.")]
    with AnthropicFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            seen: list[RunEvent] = []
            task = reading(service, "Run long", seen)
            await seen_type(seen, "tool_started")
            assert stdio_servers(tmp_path)
            await cancelled(task)
            await until(lambda: not stdio_servers(tmp_path), what="the stdio server to end")
            conversation = conversation_of(seen)
            again = await run(service, "Go on", conversation_id=conversation)

    assert of_type(seen, ToolFinished) == []
    repaired = fake.requests[1].body["messages"][-1]["content"][0]
    assert repaired["tool_use_id"] == of_type(seen, ToolStarted)[0].call_id
    assert (repaired["content"], repaired["is_error"]) == (STOPPED, True)
    assert again[-1].type == "finished"


async def test_a_call_that_finished_before_the_run_was_stopped_keeps_its_result(
    tmp_path: Path,
) -> None:
    # The echo ran: telling the model it was "not run" invites it to run it twice.
    script = [
        tool_calls((ECHO, {"message": "done"}), (SLOW, {"duration": 30, "steps": 30})),
        text("Going on."),
    ]
    with AnthropicFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            seen: list[RunEvent] = []
            task = reading(service, "Run both", seen)
            await seen_type(seen, "tool_finished")
            await cancelled(task)
            await run(service, "Go on", conversation_id=conversation_of(seen))

    results = {
        block["tool_use_id"]: block["content"]
        for block in fake.requests[1].body["messages"][-1]["content"]
        if block["type"] == "tool_result"
    }
    echo = of_type(seen, ToolFinished)[0].call_id
    assert results[echo] == "Echo: done"


async def test_leaving_start_before_the_run_ends_stops_its_tool_calls(tmp_path: Path) -> None:
    with AnthropicFake([tool_call(SLOW, {"duration": 30, "steps": 30})]) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            async with service.start("helper", "Run long", ALICE) as events:
                async for event in events:
                    if event.type == "tool_started":
                        break
            try:
                await until(lambda: not stdio_servers(tmp_path), what="the stdio server to end")
            finally:
                await events.aclose()
                for pid in stdio_servers(tmp_path):  # left behind by the bug this test shows
                    os.kill(pid, signal.SIGTERM)


async def test_a_conversation_deleted_during_its_run_ends_it_as_cancelled(tmp_path: Path) -> None:
    script = [tool_call(SLOW, {"duration": 1, "steps": 1}), text("never asked")]
    with AnthropicFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            seen: list[RunEvent] = []
            task = reading(service, "Run long", seen)
            await seen_type(seen, "tool_started")
            assert await service.store.conversations.delete(conversation_of(seen))
            await task

    # The call's result is stored as soon as it is in: that is where the deletion shows.
    assert [e.type for e in seen][-2:] == ["tool_started", "failed"]
    assert seen[-1].kind == "cancelled"  # type: ignore[union-attr]
    assert len(fake.requests) == 1


async def test_a_turn_of_too_many_calls_runs_a_few_and_answers_the_rest(tmp_path: Path) -> None:
    many = [(ECHO, {"message": str(n)}) for n in range(MAX_CALLS_PER_TURN + 8)]
    with OpenAIChatFake([tool_calls(*many), text("Done.")]) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            events = await run(service, "Echo them all")

    results = chat_results(fake.requests[1].body)
    assert len(results) == MAX_CALLS_PER_TURN + 8  # every call answered: a valid history
    assert results[:MAX_CALLS_PER_TURN] == [f"Echo: {n}" for n in range(MAX_CALLS_PER_TURN)]
    assert {r.removeprefix("Error: ") for r in results[MAX_CALLS_PER_TURN:]} == {TOO_MANY}
    assert len(of_type(events, ToolStarted)) == MAX_CALLS_PER_TURN
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.tool_calls == MAX_CALLS_PER_TURN


async def test_text_no_store_can_hold_and_arguments_no_parser_can_read_do_not_end_the_run(
    tmp_path: Path,
) -> None:
    nested = "[" * 100_000  # deeper than Python's JSON parser goes
    script = [
        Reply(text="Odd \udcff text", calls=(Call(ECHO, json.dumps({"message": "\udcff"})),)),
        Reply(calls=(Call(ECHO, nested),)),
        text("Fine."),
    ]
    with OpenAIChatFake(script) as fake:
        async with service_of(ai_project(tmp_path, fake)) as service:
            events = await run(service, "Go")
            stored = await service.store.conversations.messages(conversation_of(events))

    finished = events[-1]
    assert isinstance(finished, RunFinished), finished
    assert finished.text == "Fine."
    assert any(m.content.get("text") == "Odd ? text" for m in stored if m.role == "assistant")
    errors = [e for e in of_type(events, ToolFinished) if not e.ok]
    assert errors  # the nested arguments came back as a readable error, not a crash
