"""What a provider's stream yields, the same for every provider.

A turn streams ``TextDelta``s as the model writes, a ``ToolCall`` for each call once its
arguments are complete (in the order the model made them), one ``Usage`` and, last, ``Done``.
``ToolCall.arguments_json`` is the raw string the model sent, valid JSON or not: the tool loop
answers a malformed one with a readable error rather than losing the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# ``tool_calls``: the model waits for tool results; ``end``: it has answered; ``max_tokens``:
# cut at the output limit; ``other``: refused, filtered or any reason of the provider's own.
StopReason = Literal["end", "tool_calls", "max_tokens", "other"]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    """A call the model made. ``signature`` is an opaque token some providers (Gemini's thought
    signatures) need back with the call in the next request; the adapter sets and reads it."""

    id: str
    name: str
    arguments_json: str
    signature: str | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Done:
    stop_reason: StopReason
    provider_reason: str  # the provider's own word, for logs


Event = TextDelta | ToolCall | Usage | Done
