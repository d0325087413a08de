"""A conversation's messages as the store keeps them (JSON objects) and back.

The stored form is the provider-neutral one of ``atrium.ai.providers.messages``, so a
conversation started on one provider can be continued on another. Reading back repairs what a
stopped run left behind: a tool call without its result (the run was cancelled, or the process
died mid-call) gets one saying it was not run, since every provider refuses a history with an
unanswered call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from atrium.ai.providers.events import ToolCall
from atrium.ai.providers.messages import AssistantMessage, Message, ToolResult, UserMessage
from atrium.redaction import redacted_arguments
from atrium.store.conversations import UNREADABLE, MessageRecord, NewMessage

STOPPED = "not run: the run was stopped before this call finished"


def to_stored(message: Message, *, input_tokens: int | None = None,
              output_tokens: int | None = None) -> NewMessage:  # fmt: skip
    if isinstance(message, UserMessage):
        return NewMessage("user", {"text": message.text})
    if isinstance(message, AssistantMessage):
        calls = [
            {"id": c.id, "name": c.name, "arguments": _kept(c), "signature": c.signature}
            for c in message.tool_calls
        ]
        content: dict[str, Any] = {"text": message.text, "tool_calls": calls}
        return NewMessage("assistant", content, input_tokens, output_tokens)
    result: dict[str, Any] = {
        "call_id": message.call_id,
        "name": message.name,
        "content": message.content,
        "is_error": message.is_error,
    }
    return NewMessage("tool", result)


def _kept(call: ToolCall) -> str:
    """A call's arguments as stored: secrets hidden as the audit hides them (a ``value`` given
    to ``manage_secrets``, whatever sits under a key like ``api_key``), since a conversation is
    kept for as long as its user wants. Arguments that are not a JSON object are kept as sent:
    they reached no tool."""
    try:
        arguments = json.loads(call.arguments_json or "{}")
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        return call.arguments_json
    if not isinstance(arguments, dict):
        return call.arguments_json
    tool = call.name.rpartition("__")[2]  # mcp__marketplace__manage_secrets: manage_secrets
    safe = redacted_arguments(arguments, tool)
    return call.arguments_json if safe == arguments else json.dumps(safe, ensure_ascii=False)


def from_stored(records: Iterable[MessageRecord]) -> list[Message]:
    """The messages of a stored conversation (module docstring): each turn's tool results in
    the order of its calls (they are stored as they finish), unanswered calls answered, results
    of no call dropped."""
    messages: list[Message] = []
    calls: tuple[ToolCall, ...] = ()
    results: list[ToolResult] = []
    for record in records:
        message = _message(record.role, record.content)
        if message is None:
            continue
        if isinstance(message, ToolResult):
            results.append(message)
            continue
        messages += _answers(calls, results)
        calls, results = (), []
        if isinstance(message, AssistantMessage):
            calls = message.tool_calls
        messages.append(message)
    return messages + _answers(calls, results)


def _answers(calls: tuple[ToolCall, ...], results: list[ToolResult]) -> list[Message]:
    """A result for each call, in call order: its own (by id, first come first served, as two
    calls may share an id), else one saying it was not run."""
    answered: list[Message] = []
    for call in calls:
        own = next((result for result in results if result.call_id == call.id), None)
        if own is None:
            answered.append(ToolResult(call.id, call.name, STOPPED, is_error=True))
        else:
            results.remove(own)
            answered.append(own)
    return answered


def _message(role: str, content: dict[str, Any]) -> Message | None:
    """One stored message; ``None`` for one that cannot be read (kept, but not sent)."""
    if content.get("error") == UNREADABLE:
        return None
    try:
        if role == "user":
            return UserMessage(str(content["text"]))
        if role == "assistant":
            calls = tuple(
                ToolCall(str(c["id"]), str(c["name"]), str(c["arguments"]), c.get("signature"))
                for c in content.get("tool_calls", ())
            )
            return AssistantMessage(str(content.get("text", "")), calls)
        if role == "tool":
            return ToolResult(
                str(content["call_id"]),
                str(content["name"]),
                str(content["content"]),
                bool(content.get("is_error", False)),
            )
    except (KeyError, TypeError, AttributeError):
        return None
    return None


def as_json(message: Message) -> dict[str, Any]:
    """A message as the HTTP API shows a conversation: its role, then its content."""
    stored = to_stored(message)
    return {"role": stored.role, **stored.content}
