"""Reading a server-sent event stream (HTML5 SSE) as a plain HTTP client does."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

Event = tuple[str, dict[str, Any]]


def sse_events(lines: Iterable[str]) -> list[Event]:
    """The ``(event, data)`` pairs of a server-sent event stream, comments skipped."""
    events: list[Event] = []
    name, data = "message", ""
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and data:
            events.append((name, json.loads(data)))
            name, data = "message", ""
    return events
