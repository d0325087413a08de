"""The MCP server the gateway tests put behind the gateway, built with Atrium's own toolkit.

``build_backend(witness)`` returns a fresh ``AtriumServer`` whose tools tell the ``Witness``
what they saw: which tools were called, whether ``slow`` finished or was cancelled, and the
gates that let a test decide when ``progress`` may go on. ``Witness.app`` also records every
HTTP request that reached the backend (method, headers, body), so a test can prove that a
refused call never got there and that headers went through.

Run as a script (``python backend.py --port N --marker PATH``) it is the backend a test
kills: ``slow`` touches ``PATH`` once it runs, so the test knows the call is in flight.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atrium.servers.toolkit import AtriumServer

GATE_WAIT_S = 10.0


@dataclass
class Received:
    """One HTTP request as the backend received it."""

    method: str
    headers: dict[str, str]
    peer: tuple[str, int]  # the connection it came on
    body: bytearray = field(default_factory=bytearray)


@dataclass
class Witness:
    """What the backend saw; shared by the tools and the recording middleware."""

    requests: list[Received] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    started: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def bodies_naming(self, text: str) -> list[bytes]:
        return [bytes(r.body) for r in self.requests if text.encode() in r.body]

    def app(self, inner: ASGIApp) -> ASGIApp:
        """``inner``, recording every HTTP request on its way in."""

        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            received = Received(scope["method"], headers, tuple(scope["client"]))
            self.requests.append(received)

            async def recorded_receive() -> Message:
                message = await receive()
                received.body.extend(message.get("body", b""))
                return message

            await inner(scope, recorded_receive, send)

        return recording


Region = Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]


def build_backend(witness: Witness) -> AtriumServer[Any]:
    server: AtriumServer[Any] = AtriumServer("gateway-backend", version="1.0.0")
    _add_plain_tools(server, witness)
    _add_context_tools(server, witness)
    return server


def _add_plain_tools(server: AtriumServer[Any], witness: Witness) -> None:
    """Tools that answer, sleep or fail, each counted in the witness."""

    @server.tool()
    def echo(text: str) -> str:
        witness.calls["echo"] += 1
        return text

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def peek() -> str:
        witness.calls["peek"] += 1
        return "nothing changed"

    @server.tool()
    async def slow(seconds: float, tag: str = "slow") -> str:
        """Sleep; ``tag`` names this call in the witness (started / finished / cancelled)."""
        witness.calls["slow"] += 1
        witness.started.add(tag)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            witness.cancelled.add(tag)
            raise
        witness.finished.add(tag)
        return f"slept {seconds:g} s"

    @server.tool()
    def fail() -> str:
        witness.calls["fail"] += 1
        raise ToolError("this tool always fails")

    @server.tool()
    def delete_everything() -> str:
        witness.calls["delete_everything"] += 1
        return "everything deleted"

    @server.tool()
    def admin_reset() -> str:
        witness.calls["admin_reset"] += 1
        return "reset"


def _add_context_tools(server: AtriumServer[Any], witness: Witness) -> None:
    """Tools that report progress, take secrets, read headers or notify, and a prompt."""

    @server.tool()
    async def progress(steps: int, ctx: Context[Any, Any], gate: str = "progress") -> str:
        """Report step 1, wait until the test opens ``gate`` (it has seen step 1), go on."""
        witness.calls["progress"] += 1
        await ctx.report_progress(1, steps)
        try:
            await asyncio.wait_for(witness.gate(gate).wait(), GATE_WAIT_S)
        except TimeoutError:
            return "the gate stayed shut: step 1 never reached the client while the tool ran"
        for step in range(2, steps + 1):
            await ctx.report_progress(step, steps)
        return "the gate opened"

    @server.tool()
    def login(username: str, password: str, api_key: str) -> str:
        witness.calls["login"] += 1
        return f"welcome {username}"

    @server.tool()
    def connect(host: str, credentials: dict[str, str], token: int) -> str:
        witness.calls["connect"] += 1
        return f"connected to {host}"

    @server.tool()
    def upload(content: str) -> int:
        witness.calls["upload"] += 1
        return len(content)

    @server.tool()
    def seen_headers(region: Region, ctx: Context[Any, Any]) -> dict[str, str]:
        """The ``mcp-*`` and ``x-request-id`` headers this call arrived with."""
        witness.calls["seen_headers"] += 1
        headers = ctx.headers or {}
        return {k: v for k, v in headers.items() if k.startswith("mcp-") or k == "x-request-id"}

    @server.tool()
    async def change_tools(after_s: float, ctx: Context[Any, Any]) -> str:
        """Tell ``subscriptions/listen`` streams, ``after_s`` from now, that the tools changed."""
        await asyncio.sleep(after_s)
        await ctx.notify_tools_changed()
        return "notified"

    @server.prompt(name="résumé")
    def resume() -> str:
        return "a prompt whose name is not ASCII"


def build_killable(marker: str) -> AtriumServer[Any]:
    server: AtriumServer[Any] = AtriumServer("killable", version="1.0.0")

    @server.tool()
    async def slow(seconds: float, tag: str = "slow") -> str:
        await anyio.Path(marker).write_text(tag)
        await asyncio.sleep(seconds)
        return "slept"

    return server


if __name__ == "__main__":
    from atrium.servers.runner import run

    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--marker", required=True)
    ours, theirs = options.parse_known_args()
    run(build_killable(ours.marker), theirs)
