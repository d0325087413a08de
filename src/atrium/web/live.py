"""Server-sent events that keep a part of a page current: the fragment is rendered again at
every beat and sent (``event: update``) when it changed; the session is checked at every beat
(a signed-out browser gets ``event: signedout`` and the stream ends); the stream ends when the
browser goes away. ``static/console.js`` puts each update into the element that asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse

from atrium.web.session import Sessions, Viewer

Render = Callable[[Viewer], Awaitable[str]]


async def live(
    request: Request, sessions: Sessions, viewer: Viewer, render: Render, beat_s: float
) -> StreamingResponse:
    """The stream; the first fragment is rendered before it starts, so a fragment that cannot
    be rendered at all (an unknown server) is refused with a page, not a broken stream."""
    first = await render(viewer)
    return StreamingResponse(
        _stream(request, sessions, render, first, beat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(
    request: Request, sessions: Sessions, render: Render, first: str, beat_s: float
) -> AsyncIterator[str]:
    last = first
    yield event("update", first)
    while True:
        await asyncio.sleep(beat_s)
        viewer = await sessions.viewer(request)
        if viewer is None:
            yield event("signedout", "")
            return
        html = await render(viewer)
        yield event("update", html) if html != last else ": beat\n\n"
        last = html


def event(name: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {name}\n{lines}\n"
