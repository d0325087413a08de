"""The supervisor's control channel: other ``atrium`` processes ask it to start, stop, restart,
and (``reload-auth``) to have its gateway apply a revocation or a key rotation at once.

A Linux abstract-namespace Unix socket named after the project folder: it needs no file (no
path-length limit, nothing left behind by a killed supervisor), and the kernel reports the
caller's uid (SO_PEERCRED), so only the supervisor's own user (or root) is obeyed. One JSON
request per connection, one JSON answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from atrium.errors import AtriumError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_MESSAGE = 64 * 1024


class ControlError(AtriumError):
    """The supervisor could not be reached or refused the request."""


class NotRunning(ControlError):
    """No supervisor listens for this project."""


def address(state_dir: Path) -> str:
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:24]
    return f"\0atrium-{digest}"


async def serve(state_dir: Path, handler: Handler) -> asyncio.Server:
    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _same_user(writer):
                answer: dict[str, Any] = {"ok": False, "error": "permission denied"}
            else:
                request = json.loads(await reader.readline())
                answer = await handler(request)
        except (ValueError, AtriumError) as exc:
            answer = {"ok": False, "error": str(exc)}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(
        on_connection, path=address(state_dir), limit=MAX_MESSAGE
    )


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


async def request(
    state_dir: Path, message: dict[str, Any], timeout_s: float = 120.0
) -> dict[str, Any]:
    """Send one request to the running supervisor and return its answer."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(address(state_dir), limit=MAX_MESSAGE), 5
        )
    except (OSError, TimeoutError) as exc:
        raise NotRunning(f"cannot reach the supervisor: {exc}") from None
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout_s)
    except (OSError, TimeoutError) as exc:
        raise ControlError(f"the supervisor did not answer: {exc!r}") from None
    finally:
        writer.close()
    if not line:
        raise ControlError("the supervisor closed the connection without answering")
    answer: dict[str, Any] = json.loads(line)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "the supervisor refused the request")))
    return answer
