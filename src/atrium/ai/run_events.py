"""What an agent run tells its watcher, the same on every face.

The CLI prints these (text as it streams, one line per tool call, usage at the end; ``--json``
one event per line), the HTTP API sends each as one server-sent event named by its ``type``,
and the ``run_agent`` tool gathers them into its result. ``as_json`` is the one wire form.

A run is: ``started``, then per model turn its ``text`` pieces, its ``tool_started`` and
``tool_finished`` pairs (several calls of a turn overlap) and its ``usage``, and last exactly
one of ``finished`` or ``failed``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

# ``answered``: the model answered; ``max_tokens``: cut at the output limit; ``tool_rounds``:
# the model still wanted tools after ``max_tool_rounds`` and its answer-now turn; ``other``: the
# provider stopped for a reason of its own (a refusal, a content filter).
FinishReason = Literal["answered", "max_tokens", "tool_rounds", "other"]


@dataclass(frozen=True)
class RunStarted:
    conversation_id: str
    agent: str
    provider: str
    model: str
    tools: tuple[str, ...]
    servers: dict[str, str | None]  # each server's connection problem, None when connected
    type: Literal["started"] = "started"


@dataclass(frozen=True)
class TextChunk:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ToolStarted:
    call_id: str
    name: str
    arguments: dict[str, Any] | None  # None when the model's arguments were not a JSON object
    round: int
    type: Literal["tool_started"] = "tool_started"


@dataclass(frozen=True)
class ToolFinished:
    call_id: str
    name: str
    ok: bool
    duration_ms: float
    error: str | None
    round: int
    type: Literal["tool_finished"] = "tool_finished"


@dataclass(frozen=True)
class TurnUsage:
    round: int
    input_tokens: int
    output_tokens: int
    type: Literal["usage"] = "usage"


@dataclass(frozen=True)
class RunFinished:
    conversation_id: str
    reason: FinishReason
    text: str  # the final answer
    rounds: int  # model requests made
    tool_calls: int
    input_tokens: int
    output_tokens: int
    type: Literal["finished"] = "finished"


@dataclass(frozen=True)
class RunFailed:
    conversation_id: str | None
    error: str
    # ``provider``: the model API failed; ``cancelled``: the run was stopped; ``internal``: a bug
    kind: Literal["provider", "cancelled", "internal"]
    type: Literal["failed"] = "failed"


RunEvent = RunStarted | TextChunk | ToolStarted | ToolFinished | TurnUsage | RunFinished | RunFailed


def as_json(event: RunEvent) -> dict[str, Any]:
    """The event as a JSON object, ``type`` first."""
    fields = dataclasses.asdict(event)
    return {"type": fields.pop("type"), **fields}
