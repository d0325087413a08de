"""The stdio server process: its pipes as SDK transport streams, its stderr in our log, its end.

The MCP stdio transport (spec 2025-11-25, basic/transports#stdio) is newline-delimited JSON-RPC
on the child's stdin and stdout; whatever the child writes to stderr is logging. We spawn the
child ourselves rather than through ``mcp.client.stdio.stdio_client`` because that helper
hides the process (we report its pid on ``/health`` and its exit code in the log), passes the
child only an allow-list of environment variables (the supervisor has already reduced our
environment to what the server may see, so the child inherits all of it), and moves the child
into a session of its own. Ours stays in the bridge's process group, which the supervisor
created for the bridge: a signal to that group, or the group SIGKILL that ends every stop,
reaches the child and whatever it started, even when the bridge itself was killed.

Shutdown follows the spec's sequence (basic/lifecycle#shutdown): close the child's stdin, wait,
SIGTERM, wait, SIGKILL. The event loop's child watcher reaps the process, so no zombie is left.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

import anyio
import mcp_types
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

logger = logging.getLogger(__name__)
# The child's own stderr lines, re-logged so that they carry a timestamp in the server's log.
stderr_logger = logging.getLogger(f"{__name__}.stderr")

STDIN_CLOSE_GRACE_S = 2.0  # for the child to exit by itself once its stdin is closed
TERMINATE_GRACE_S = 2.0  # between SIGTERM and SIGKILL
KILL_REAP_S = 2.0  # for the event loop to see a SIGKILLed child go
WRITER_FLUSH_S = 0.5  # for messages already accepted to reach the child before stdin closes
STDERR_DRAIN_S = 0.5  # for the child's last stderr lines, after it has exited


class ChildProcess:
    """A running stdio server; an SDK ``JSONRPCDispatcher`` talks over its two streams."""

    def __init__(
        self,
        process: Process,
        read_stream: MemoryObjectReceiveStream[SessionMessage | Exception],
        write_stream: MemoryObjectSendStream[SessionMessage],
    ) -> None:
        self._process = process
        self.read_stream = read_stream
        self.write_stream = write_stream
        self.exited = anyio.Event()
        self.stdout_closed = anyio.Event()
        self.writer_done = anyio.Event()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait_gone(self) -> None:
        """Return once the child has exited or closed its stdout (it can serve nothing more)."""
        async with anyio.create_task_group() as group:

            async def until(event: anyio.Event) -> None:
                await event.wait()
                group.cancel_scope.cancel()

            group.start_soon(until, self.exited)
            group.start_soon(until, self.stdout_closed)

    async def stop(self) -> None:
        """Close stdin, then SIGTERM, then SIGKILL, each after a grace period (spec order)."""
        if self.exited.is_set():
            return
        with anyio.move_on_after(WRITER_FLUSH_S):
            await self.writer_done.wait()
        assert self._process.stdin is not None
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._process.stdin.aclose()
        if await self._exits_within(STDIN_CLOSE_GRACE_S):
            return
        logger.warning(
            "child %d still runs %.0f s after its stdin closed; SIGTERM",
            self.pid,
            STDIN_CLOSE_GRACE_S,
        )
        self._signal(signal.SIGTERM)
        if await self._exits_within(TERMINATE_GRACE_S):
            return
        logger.warning("child %d ignored SIGTERM; SIGKILL", self.pid)
        self._signal(signal.SIGKILL)
        if not await self._exits_within(KILL_REAP_S):
            logger.error("child %d survived SIGKILL; abandoning it", self.pid)

    async def _exits_within(self, seconds: float) -> bool:
        with anyio.move_on_after(seconds):
            await self.exited.wait()
        return self.exited.is_set()

    def _signal(self, signum: signal.Signals) -> None:
        # It may exit between our check and the signal; that is the outcome we wanted anyway.
        with suppress(ProcessLookupError):
            self._process.send_signal(signum)


def describe_exit(returncode: int | None) -> str:
    """``exited with code 3``, ``was killed by SIGKILL`` or ``is still running``."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@asynccontextmanager
async def spawn_child(command: Sequence[str]) -> AsyncIterator[ChildProcess]:
    """Start ``command`` with our environment; on exit, stop it and wait until it is gone.

    Raises ``OSError`` when the program cannot be started (missing, not executable).
    """
    process = await anyio.open_process(
        list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    to_session, from_child = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_child, from_session = anyio.create_memory_object_stream[SessionMessage](0)
    child = ChildProcess(process, from_child, to_child)
    logger.info("started child %d: %s", process.pid, " ".join(command))
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_watch_exit, process, child)
            group.start_soon(_read_stdout, process, to_session, child)
            group.start_soon(_write_stdin, process, from_session, child)
            relay_done = anyio.Event()
            group.start_soon(_relay_stderr, process, relay_done)
            try:
                yield child
            finally:
                # Shielded: the child must be stopped even when we are being cancelled.
                with anyio.CancelScope(shield=True):
                    to_child.close()
                    from_child.close()
                    await child.stop()
                    with anyio.move_on_after(STDERR_DRAIN_S):
                        await relay_done.wait()
                # A grandchild that inherited the pipes can keep them open after the child died.
                group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            if child.exited.is_set():
                await process.aclose()


async def _watch_exit(process: Process, child: ChildProcess) -> None:
    await process.wait()
    child.exited.set()


async def _read_stdout(
    process: Process, sink: MemoryObjectSendStream[SessionMessage | Exception], child: ChildProcess
) -> None:
    assert process.stdout is not None
    try:
        async with sink:
            async for line in _lines(process.stdout):
                if not line.strip():
                    continue
                try:
                    await sink.send(_parse(line))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    # The session is gone. Keep reading and dropping: a child blocked on a
                    # full stdout pipe could not exit.
                    await _drain(process.stdout)
                    return
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        child.stdout_closed.set()


async def _drain(stream: ByteReceiveStream) -> None:
    with suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        while True:
            await stream.receive()


def _parse(line: str) -> SessionMessage | Exception:
    # A malformed line goes to the session as a value: the SDK reports it, the session lives on.
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValidationError as exc:
        logger.warning("child wrote a line that is not JSON-RPC: %.200s", line)
        return exc


async def _write_stdin(
    process: Process, source: MemoryObjectReceiveStream[SessionMessage], child: ChildProcess
) -> None:
    assert process.stdin is not None
    try:
        async with source:
            async for message in source:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await process.stdin.send(data.encode() + b"\n")
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        # The child closed its stdin (or died). Closing ``source`` makes the session's next
        # write fail at once instead of waiting forever for a reader.
        logger.warning("cannot write to child %d: its stdin is closed", process.pid)
    finally:
        child.writer_done.set()


async def _relay_stderr(process: Process, done: anyio.Event) -> None:
    assert process.stderr is not None
    try:
        async for line in _lines(process.stderr):
            stderr_logger.info("%s", line.rstrip())
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        done.set()


async def _lines(stream: ByteReceiveStream) -> AsyncIterator[str]:
    """Complete lines (without the newline); a last unterminated line is yielded at EOF."""
    # The pieces of the current line are joined once it ends: a resource of many megabytes
    # arrives as one line in many chunks, and re-concatenating per chunk would be quadratic.
    pending: list[str] = []
    # ``replace``: one bad byte costs that line, not the whole connection.
    async for chunk in TextReceiveStream(stream, encoding="utf-8", errors="replace"):
        *ended, rest = chunk.split("\n")
        if ended:
            yield "".join([*pending, ended[0]])
            pending.clear()
            for line in ended[1:]:
                yield line
        if rest:
            pending.append(rest)
    if pending:
        yield "".join(pending)
