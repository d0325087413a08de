"""What every provider fake shares: the script of replies, the record of requests, and serving.

A fake is a Starlette app served by uvicorn on 127.0.0.1 (a free port, a background thread, so
both async tests and tests of the synchronous CLI can use it). Each request it gets is recorded
(`Recorded`: path, query, lower-cased headers, parsed JSON body) and answered with the next item
of its script: a `Reply` (text and/or tool calls, streamed or not as the request asks) or a
`Failure` (an HTTP error in the provider's own error format, with `Retry-After` if scripted).
A request after the script is exhausted gets a 400 that says so (not retried by the SDKs).

Subclasses say how a reply and an error look on their provider's wire (`fake_anthropic.py`,
`fake_openai_responses.py`, `fake_openai_chat.py`, `fake_gemini.py`).
"""

from __future__ import annotations

import abc
import json
import secrets
import socket
import string
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.polling import wait_until

_BASE62 = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Call:
    """One tool call: ``arguments`` is the JSON text the model sends, possibly malformed."""

    name: str
    arguments: str

    @property
    def parsed(self) -> dict[str, Any] | None:
        """The arguments as an object, or None when they are not a JSON object."""
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 21
    output_tokens: int = 9


@dataclass(frozen=True)
class Reply:
    """One model turn: text (streamed in ``deltas`` pieces), then tool calls (their arguments
    streamed in ``deltas`` pieces where the provider streams them).

    ``stall``: streamed, the reply stops after its first text delta and sends nothing more until
    the client goes away (``ProviderFake.abandoned`` counts it): for cancellation tests."""

    text: str = ""
    calls: tuple[Call, ...] = ()
    usage: Usage = field(default_factory=Usage)
    deltas: int = 3
    stall: bool = False


@dataclass(frozen=True)
class Failure:
    """An HTTP error; ``retry_after`` is the `Retry-After` header's value, if any."""

    status: int
    retry_after: str | None = None
    message: str = "scripted failure"


ScriptItem = Reply | Failure


def text(value: str, *, usage: Usage | None = None, deltas: int = 3, stall: bool = False) -> Reply:
    return Reply(text=value, usage=usage or Usage(), deltas=deltas, stall=stall)


def tool_call(name: str, arguments: Mapping[str, Any], *, text: str = "") -> Reply:
    return Reply(text=text, calls=(Call(name, json.dumps(arguments)),))


def tool_calls(*calls: tuple[str, Mapping[str, Any]]) -> Reply:
    """Several tool calls in one turn (parallel tool calls)."""
    return Reply(calls=tuple(Call(name, json.dumps(arguments)) for name, arguments in calls))


def malformed_call(name: str, arguments: str = '{"city": "Par') -> Reply:
    """A tool call whose arguments are not valid JSON (Gemini: MALFORMED_FUNCTION_CALL)."""
    return Reply(calls=(Call(name, arguments),))


def rate_limited(retry_after: str | None = "0.01") -> Failure:
    """A 429. Both SDKs that retry read `Retry-After` as seconds and accept a (non-standard)
    fraction, which keeps the tests fast; pass "0" or None to test their own backoff."""
    return Failure(429, retry_after, "rate limit exceeded")


def server_error() -> Failure:
    return Failure(500, None, "internal server error")


@dataclass(frozen=True)
class Recorded:
    """A request the fake got."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def random_id(prefix: str, length: int, alphabet: str = _BASE62) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def pieces(value: str, count: int) -> list[str]:
    """``value`` cut into at most ``count`` non-empty pieces that join back to it."""
    if not value:
        return []
    size = max(1, -(-len(value) // max(1, count)))
    return [value[start : start + size] for start in range(0, len(value), size)]


#: What a provider's stream yields after a reply's first text delta when the reply stalls.
STALL = b""


def text_pieces(reply: Reply) -> Iterator[str | bytes]:
    """The reply's text deltas, with ``STALL`` after the first when the reply stalls."""
    for number, piece in enumerate(pieces(reply.text, reply.deltas)):
        yield piece
        if reply.stall and number == 0:
            yield STALL


def sse(data: Any, event: str | None = None, *, end: str = "\n\n") -> bytes:
    """One server-sent event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}{end}".encode()


class ProviderFake(abc.ABC):
    """A provider's HTTP API on loopback playing ``script``; use it as a context manager."""

    #: What to append to ``url`` to get the SDK's ``base_url``.
    sdk_path: ClassVar[str] = ""

    def __init__(self, script: Iterable[ScriptItem]) -> None:
        self._script: deque[ScriptItem] = deque(script)
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        #: Streams the client left before their end (a stalled reply, a cancelled run).
        self.abandoned = 0
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give the provider's official SDK."""
        return self.url + self.sdk_path

    @property
    def remaining(self) -> int:
        """How many scripted items no request has taken yet."""
        return len(self._script)

    @abc.abstractmethod
    def routes(self) -> list[Route]: ...

    @abc.abstractmethod
    def wants_stream(self, request: Request, body: Any) -> bool: ...

    @abc.abstractmethod
    def message(self, reply: Reply, body: Any) -> dict[str, Any]:
        """The non-streaming response body."""

    @abc.abstractmethod
    def stream(self, reply: Reply, body: Any) -> Iterator[bytes]:
        """The streaming response, event by event."""

    @abc.abstractmethod
    def error(self, status: int, message: str) -> dict[str, Any]:
        """The provider's error body for ``status``."""

    async def handle(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"null")
        with self._lock:
            self.requests.append(_record(request, body))
            item = self._script.popleft() if self._script else None
        if item is None:
            count = len(self.requests)
            return JSONResponse(
                self.error(400, f"fake: no scripted reply for request {count}"), 400
            )
        if isinstance(item, Failure):
            headers = {"retry-after": item.retry_after} if item.retry_after is not None else {}
            return JSONResponse(self.error(item.status, item.message), item.status, headers)
        try:
            return self.respond(request, item, body)
        except ValueError as exc:  # a script this provider's wire cannot carry
            return JSONResponse(self.error(400, f"fake: {exc}"), 400)

    def respond(self, request: Request, reply: Reply, body: Any) -> Response:
        if self.wants_stream(request, body):
            frames = self._frames(request, self.stream(reply, body))
            return StreamingResponse(frames, media_type="text/event-stream")
        return JSONResponse(self.message(reply, body))

    async def _frames(self, request: Request, frames: Iterator[bytes]) -> AsyncIterator[bytes]:
        for frame in frames:
            if frame == STALL:
                # Nothing is sent while stalled, so only receiving tells that the client left.
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                with self._lock:
                    self.abandoned += 1
                return
            yield frame

    def __enter__(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            Starlette(routes=self.routes()),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, daemon=True
        )
        thread.start()
        wait_until(
            lambda: server.started or not thread.is_alive(), what=f"{type(self).__name__} to start"
        )
        assert server.started, f"{type(self).__name__} stopped before it started"
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._listener = listener
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._listener.close()


def _record(request: Request, body: Any) -> Recorded:
    return Recorded(
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
    )
