"""``/admin/usage``: calls, errors and latency per server and per tool over a window (the last
hour, day or week), external vs in-app, with bar charts drawn as SVG on the server (no script,
no inline style: the bars' geometry is in attributes), and the same over time, a bucket at a
time (``web.timeline``): per server, or per tool of the server chosen (``?server=``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from atrium.gateway.parts import GatewayParts
from atrium.store.audit import UsageRow
from atrium.web.guard import Refused
from atrium.web.render import page
from atrium.web.session import Viewer
from atrium.web.timeline import (
    BUCKETS,
    MAX_SERIES,
    TimeChart,
    lines,
    origin_bars,
    series,
    starts,
)

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
CHART_WIDTH = 600
BAR_HEIGHT = 18
LABEL_WIDTH = 180
TOP_TOOLS = 50  # the busiest; a bar and a row each for thousands would bury them


@dataclass(frozen=True)
class Bar:
    label: str
    y: int
    external_width: float
    in_app_width: float
    errors_width: float
    row: UsageRow


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    height: int
    label_width: int = LABEL_WIDTH
    width: int = CHART_WIDTH


def chart(rows: list[UsageRow], label_keys: tuple[str, ...]) -> Chart:
    """One bar per row, split external / in-app, with its errors as a line under it."""
    top = max((row.requests for row in rows), default=0) or 1
    scale = (CHART_WIDTH - LABEL_WIDTH - 10) / top
    bars = []
    for index, row in enumerate(rows):
        label = "/".join(str(row.keys.get(key) or "–") for key in label_keys)
        bars.append(
            Bar(
                label=label,
                y=index * (BAR_HEIGHT + 8),
                external_width=row.external * scale,
                in_app_width=row.in_app * scale,
                errors_width=row.errors * scale,
                row=row,
            )
        )
    return Chart(bars, max(len(bars), 1) * (BAR_HEIGHT + 8))


class UsagePage:
    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts

    async def page(self, request: Request, viewer: Viewer) -> Response:
        window = request.query_params.get("window") or "24h"
        if window not in WINDOWS:
            raise Refused(400, "bad_filter", f"window: must be one of {', '.join(WINDOWS)}")
        server = request.query_params.get("server") or None
        if server is not None and server not in self.parts.directory.routes:
            raise Refused(400, "bad_filter", f"server: no server '{server}' is routed here")
        now = datetime.now(UTC)
        since = now - WINDOWS[window]
        audit, subject = self.parts.store.audit, viewer.audit_subject
        # Three independent reads, each on a connection of its own: the page waits for the
        # slowest, not for their sum (issue 16).
        servers, (tools, tool_groups), timeline = await asyncio.gather(
            audit.usage(since, "server", subject=subject),
            audit.busiest(since, "tool", TOP_TOOLS, subject=subject),
            self._timeline(viewer, window, since, now, server),
        )
        return page(
            "usage.html",
            viewer=viewer,
            nav="usage",
            window=window,
            windows=list(WINDOWS),
            servers=chart(servers, ("server",)),
            tools=chart(tools, ("server", "tool")),
            more_tools=tool_groups - len(tools),
            server=server,
            names=sorted(self.parts.directory.routes),
            timeline=timeline,
        )

    async def _timeline(
        self, viewer: Viewer, window: str, since: datetime, now: datetime, server: str | None
    ) -> list[TimeChart]:
        bucket_s = BUCKETS[window]
        buckets = starts(since, now, bucket_s)
        points = await self.parts.store.audit.usage_over_time(
            buckets[0],
            bucket_s,
            "tool" if server else "server",
            subject=viewer.audit_subject,
            server=server,
            busiest=MAX_SERIES,
        )
        grouped = series(points)
        what = f"tool of {server}" if server else "server"
        return [
            lines(f"Calls per {what}", "calls", grouped, buckets, bucket_s, lambda p: p.requests),
            lines(f"Errors per {what}", "errors", grouped, buckets, bucket_s, lambda p: p.errors),
            lines(f"Mean latency per {what}", "ms", grouped, buckets, bucket_s, lambda p: p.avg_ms),
            origin_bars("External and in-app calls", points, buckets, bucket_s),
        ]
