"""Server-sent events, read just enough to find JSON-RPC responses in a stream.

Streams are relayed event by event as they arrive (never buffered to the end): bytes of a
complete event go out at once; only the bytes of an event still arriving wait. An event whose
``data`` is the response to a ``tools/list`` may be rewritten (policy), one to a ``tools/call``
is read (audit); everything else passes through byte for byte (WHATWG HTML, "Server-sent
events", for the framing: events end with a blank line, ``data:`` lines join with ``\\n``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")

Rewrite = Callable[[dict[str, Any]], bytes | None]


class EventRelay:
    """Feed it chunks; it returns the bytes to send on, each event given to ``inspect``.

    ``inspect`` gets every JSON-RPC message found in an event's data and returns new data for
    the event, or ``None`` to keep the event as it was.
    """

    def __init__(self, inspect: Rewrite) -> None:
        self._inspect = inspect
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        out = []
        start = 0
        for boundary in _BOUNDARY.finditer(data):
            event = data[start : boundary.end()]
            out.append(self._event(event))
            start = boundary.end()
        self._pending = data[start:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    def _event(self, raw: bytes) -> bytes:
        lines = raw.splitlines()
        payload = [line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")]
        if not payload:
            return raw
        try:
            message = orjson.loads(b"\n".join(payload))
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(message, dict):
            return raw
        replaced = self._inspect(message)
        if replaced is None:
            return raw
        kept = [line for line in lines if line and not line.startswith(b"data:")]
        return b"\n".join([*kept, b"data: " + replaced]) + b"\n\n"


def error_event(message: bytes) -> bytes:
    """One event carrying ``message``, a JSON-RPC error the gateway adds to a stream."""
    return b"event: message\ndata: " + message + b"\n\n"
