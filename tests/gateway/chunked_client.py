"""A client that sends a large body in chunks and notes how much of it went out before the
answer came: the way to see that a server stopped reading at its limit rather than after the
whole body (a server that reads everything answers only once the client has sent it all).

Raw sockets, not ``httpx2``: an HTTP client library sends the whole body before it reads the
answer. The body goes with ``Transfer-Encoding: chunked``, so no ``Content-Length`` tells the
server the size in advance: only reading can.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

CHUNK = 64 * 1024
TOTAL = 64 * 1024 * 1024
ANSWER_WITHIN_S = 20.0


@dataclass(frozen=True)
class Answered:
    status: int
    sent: int  # bytes of the body sent when the answer's status line arrived
    total: int  # bytes the client meant to send


async def post_in_chunks(
    url: str,
    headers: dict[str, str] | None = None,
    *,
    total: int = TOTAL,
    chunk: int = CHUNK,
    filler: bytes = b" ",
) -> Answered:
    """POST ``total`` bytes of ``filler`` to ``url`` in chunks of ``chunk`` bytes, until the
    server answers (or has all of it); the status and how much had been sent by then."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    progress = [0]
    sending = asyncio.create_task(_send(writer, progress, total, chunk, filler))
    try:
        status_line = await asyncio.wait_for(reader.readline(), ANSWER_WITHIN_S)
        sent = progress[0]
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await sending
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not status_line:
        raise AssertionError(f"the server closed the connection without an answer ({sent} sent)")
    return Answered(int(status_line.split()[1]), sent, total)


async def _send(
    writer: asyncio.StreamWriter, progress: list[int], total: int, chunk: int, filler: bytes
) -> None:
    # ``filler`` repeated without a seam, whatever its length: chunk i starts where i-1 ended.
    pattern = filler * (chunk // len(filler) + 2)
    try:
        while progress[0] < total:
            start = progress[0] % len(filler)
            piece = pattern[start : start + chunk]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            progress[0] += len(piece)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except OSError:
        return  # the server closed the connection: it answered and stopped reading
