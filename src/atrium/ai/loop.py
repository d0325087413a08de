"""The tool loop: model → tool calls → results → model, until the model answers.

One round is one model request. Its text streams out as it comes (``TextChunk``); the tool
calls it makes all run at once, each one's start and end told (``ToolStarted``,
``ToolFinished`` with its duration); their results go back to the model in the next round. A
failed call is a result too, with ``is_error`` and a text the model can act on (seed 004:
"errors are returned as readable tool results"): a tool that was not offered, arguments that
are not JSON, a server that is down, a call that took longer than ``tool_call_s``.

After ``max_tool_rounds`` rounds that called tools the model is asked once more, with a note
saying why and ``tool_choice: none`` (the tools stay defined: a history with tool calls needs
them), and must answer. If it asks for tools even then, the calls are
answered as not run (so the stored conversation stays one a provider accepts when continued)
and the run ends with ``tool_rounds``.

Besides the run's events the loop yields ``Recorded`` for each message the conversation gains
(the assistant's turns with their usage, each tool result as soon as it is in), which the
service stores and never shows. Closing the generator, or cancelling the task that reads it,
closes the model's stream and cancels the tool calls in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp import types

from atrium.ai.providers.events import Done, TextDelta, ToolCall, Usage
from atrium.ai.providers.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolResult,
    UserMessage,
)
from atrium.ai.providers.provider import Provider
from atrium.ai.run_events import (
    FinishReason,
    RunEvent,
    RunFinished,
    TextChunk,
    ToolFinished,
    ToolStarted,
    TurnUsage,
)
from atrium.redaction import redacted_arguments, scrubbed

ToolCaller = Callable[[str, str, str], Awaitable[types.CallToolResult]]
"""``(name, arguments_json, call_id)`` → the result; never raises (``McpManager.call``)."""

# What a model is told when its tool rounds are spent, and when its call could not be parsed.
ANSWER_NOW = (
    "You have used all {rounds} tool rounds this conversation allows. Do not call any more"
    " tools: answer now with what you have, and say what you could not finish."
)
UNPARSED_CALL = (
    "Your last function call could not be parsed. Call the tool again with arguments that are"
    " one valid JSON object."
)
NOT_RUN = "not run: the tool round limit of this conversation was reached"
# A tool result longer than this reaches the model cut, with a note: one tool must not fill
# the model's context window (or the store) on its own.
MAX_RESULT_CHARS = 100_000
MAX_ERROR_CHARS = 500  # of a failed call's reason in its ``tool_finished`` event
# A model may ask for many calls in one turn; a hostile or confused one for hundreds. At most
# this many run (the rest are answered as not run), this many at a time.
MAX_CALLS_PER_TURN = 32
MAX_PARALLEL_CALLS = 8
TOO_MANY = f"not run: at most {MAX_CALLS_PER_TURN} tool calls are run per turn"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_tool_rounds: int
    tool_call_s: float
    max_tokens: int = 4096


@dataclass(frozen=True)
class Recorded:
    """A message the conversation gained; ``usage`` is that of the turn that wrote it."""

    message: Message
    usage: Usage | None = None


@dataclass
class _Totals:
    rounds: int = 0
    tool_rounds: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class _Turn:
    text: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    done: Done | None = None

    @property
    def message(self) -> AssistantMessage:
        return AssistantMessage("".join(self.text), tuple(self.calls))


@dataclass(frozen=True)
class Conversation:
    """What the loop runs on: the model, its instructions and tools, and the history so far
    (ending with the user's new message); the loop appends to ``history``."""

    conversation_id: str
    provider: Provider
    model: str
    system: str
    history: list[Message]
    tools: Sequence[dict[str, Any]]  # in the provider's format
    offered: frozenset[str]  # the names in ``tools``


async def tool_loop(
    run: Conversation, call: ToolCaller, limits: Limits
) -> AsyncGenerator[RunEvent | Recorded, None]:
    """Run until the model answers; see the module docstring."""
    totals = _Totals()
    answer_now = retried = False
    while True:
        totals.rounds += 1
        turn = _Turn()
        model_turn = _model_turn(run, turn, limits, answer_now, totals.tool_rounds)
        async with contextlib.aclosing(model_turn) as streamed_events:
            async for streamed in streamed_events:
                yield streamed
        turn.calls = _unique_ids(turn.calls)
        totals.input_tokens += turn.usage.input_tokens if turn.usage else 0
        totals.output_tokens += turn.usage.output_tokens if turn.usage else 0
        if turn.usage is not None:
            yield TurnUsage(totals.rounds, turn.usage.input_tokens, turn.usage.output_tokens)
        message = turn.message
        if message.text or message.tool_calls:
            run.history.append(message)
            yield Recorded(message, turn.usage)
        reason = _finish_reason(turn, answer_now, retried)
        retried = reason == "retry"
        if reason == "retry":  # once: a model that cannot form a call at all ends the run
            run.history.append(UserMessage(UNPARSED_CALL))
            yield Recorded(run.history[-1])
            continue
        if reason is not None:
            for unanswered in _not_run(run, turn.calls, NOT_RUN):
                yield unanswered
            yield _finished(run, reason, message.text, totals)
            return
        totals.tool_rounds += 1
        async with contextlib.aclosing(_run_calls(run, turn.calls, call, limits, totals)) as calls:
            async for happened in calls:
                yield happened
        answer_now = totals.tool_rounds >= limits.max_tool_rounds


def _finish_reason(
    turn: _Turn, answer_now: bool, retried: bool
) -> FinishReason | Literal["retry"] | None:
    """Why the run ends after this turn, ``"retry"`` to ask again, ``None`` to run its calls."""
    done = turn.done or Done("other", "the stream ended without a stop reason")
    if turn.calls:
        return "tool_rounds" if answer_now else None
    if done.provider_reason == "MALFORMED_FUNCTION_CALL" and not (answer_now or retried):
        return "retry"  # Gemini could not parse its own call: it gets one more round
    if done.stop_reason in ("end", "tool_calls"):
        return "answered"
    return "max_tokens" if done.stop_reason == "max_tokens" else "other"


async def _model_turn(
    run: Conversation, turn: _Turn, limits: Limits, answer_now: bool, tool_rounds: int
) -> AsyncGenerator[RunEvent, None]:
    history: list[Message] = list(run.history)
    if answer_now:
        history.append(UserMessage(ANSWER_NOW.format(rounds=tool_rounds)))
    request = ModelRequest(
        model=run.model,
        messages=history,
        system=run.system,
        tools=run.tools,
        max_tokens=limits.max_tokens,
        tool_choice="none" if answer_now else "auto",
    )
    async with contextlib.aclosing(run.provider.stream(request)) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                text = clean(event.text)
                turn.text.append(text)
                yield TextChunk(text)
            elif isinstance(event, ToolCall):
                turn.calls.append(
                    dataclasses.replace(
                        event, name=clean(event.name), arguments_json=clean(event.arguments_json)
                    )
                )
            elif isinstance(event, Usage):
                turn.usage = event
            else:
                turn.done = event


async def _run_calls(
    run: Conversation,
    calls: Sequence[ToolCall],
    call: ToolCaller,
    limits: Limits,
    totals: _Totals,
) -> AsyncGenerator[RunEvent | Recorded, None]:
    """The calls of one turn at once (at most ``MAX_PARALLEL_CALLS`` running): events and each
    result (to be stored) as they happen; the results join the history in call order.

    Results are kept by position, not by call id: some OpenAI-compatible servers give two calls
    of one turn the same id."""
    queue: asyncio.Queue[RunEvent | Recorded] = asyncio.Queue()
    running, beyond = calls[:MAX_CALLS_PER_TURN], calls[MAX_CALLS_PER_TURN:]
    results: list[ToolResult | None] = [None] * len(running)
    number = totals.tool_rounds
    gate = asyncio.Semaphore(MAX_PARALLEL_CALLS)

    async def one(index: int, tool_call: ToolCall) -> None:
        try:
            async with gate:  # started (and timed) when it runs, not while it waits its turn
                arguments = _object_or_none(tool_call.arguments_json)
                tool = tool_call.name.rpartition("__")[2]
                shown = redacted_arguments(arguments, tool) if arguments is not None else None
                queue.put_nowait(ToolStarted(tool_call.id, tool_call.name, shown, number))
                started = time.perf_counter()
                result = await _call_one(run, tool_call, call, limits)
        except Exception as exc:  # a bug of ours must not hang the run: the model hears of it
            logger.exception("tool call %s failed inside Atrium", tool_call.name)
            reason = f"Atrium failed to run the tool: {exc.__class__.__name__}"
            result = ToolResult(tool_call.id, tool_call.name, reason, is_error=True)
            started = time.perf_counter()
        duration = round((time.perf_counter() - started) * 1000, 1)
        error = result.content[:MAX_ERROR_CHARS] if result.is_error else None
        results[index] = result
        queue.put_nowait(Recorded(result))  # stored now: a stop later keeps what was done
        queue.put_nowait(
            ToolFinished(tool_call.id, tool_call.name, error is None, duration, error, number)
        )

    totals.tool_calls += len(running)
    tasks = [asyncio.create_task(one(index, c)) for index, c in enumerate(running)]
    try:
        for _ in range(3 * len(running)):  # each call: its start, its result, its end
            yield await queue.get()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    run.history.extend(result for result in results if result is not None)
    for unanswered in _not_run(run, beyond, TOO_MANY):
        yield unanswered


async def _call_one(
    run: Conversation, tool_call: ToolCall, call: ToolCaller, limits: Limits
) -> ToolResult:
    def failed(reason: str) -> ToolResult:
        return ToolResult(tool_call.id, tool_call.name, reason, is_error=True)

    if tool_call.name not in run.offered:
        return failed(
            f"there is no tool '{tool_call.name}' among the tools you were given; call one of"
            " them by its exact name"
        )
    try:
        async with asyncio.timeout(limits.tool_call_s):
            result = await call(tool_call.name, tool_call.arguments_json, tool_call.id)
    except TimeoutError:
        return failed(f"the tool did not answer within {limits.tool_call_s:g} s")
    # A server's error may quote the arguments it refused, a secret among them (a value for
    # ``manage_secrets``): the model and the stored conversation get it hidden, as the audit.
    arguments = _object_or_none(tool_call.arguments_json)
    tool = tool_call.name.rpartition("__")[2]
    text = scrubbed(result_text(result), arguments, tool) or ""
    return ToolResult(tool_call.id, tool_call.name, text, result.is_error)


def _not_run(run: Conversation, calls: Sequence[ToolCall], reason: str) -> Iterator[Recorded]:
    """Each call answered as not run, so the history stays one every provider accepts."""
    for tool_call in calls:
        result = ToolResult(tool_call.id, tool_call.name, reason, is_error=True)
        run.history.append(result)
        yield Recorded(result)


def _unique_ids(calls: list[ToolCall]) -> list[ToolCall]:
    """The calls with unique ids: some OpenAI-compatible servers give two calls one id, and a
    stored result must find its own call when the conversation is read back."""
    seen: dict[str, int] = {}
    unique = []
    for tool_call in calls:
        count = seen[tool_call.id] = seen.get(tool_call.id, 0) + 1
        if count > 1:
            tool_call = dataclasses.replace(tool_call, id=f"{tool_call.id}#{count}")
        unique.append(tool_call)
    return unique


def clean(text: str) -> str:
    """``text`` with lone surrogates (which no database or JSON encoder takes) replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _finished(run: Conversation, reason: FinishReason, text: str, totals: _Totals) -> RunFinished:
    return RunFinished(
        conversation_id=run.conversation_id,
        reason=reason,
        text=text,
        rounds=totals.rounds,
        tool_calls=totals.tool_calls,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
    )


def _object_or_none(arguments_json: str) -> dict[str, Any] | None:
    try:
        value = json.loads(arguments_json or "{}")
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        return None
    return value if isinstance(value, dict) else None


def result_text(result: types.CallToolResult) -> str:
    """A tool's result as the text a model reads: its text blocks, else its structured content
    as JSON; other blocks named by kind. Cut at ``MAX_RESULT_CHARS``."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, not shown]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource: {resource.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = clean("\n".join(parts)) or ("the tool failed" if result.is_error else "(no output)")
    if len(text) > MAX_RESULT_CHARS:
        cut = len(text) - MAX_RESULT_CHARS
        text = f"{text[:MAX_RESULT_CHARS]}\n[... {cut} more characters not shown]"
    return text
