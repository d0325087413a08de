"""Rendering the console's pages: one Jinja2 environment, autoescaped, and the filters the
templates share (times, durations, JSON)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

_env = Environment(
    loader=PackageLoader("atrium.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def since(started: float | None, now: float | None = None) -> str:
    """How long ago ``started`` (a Unix time) was, shortly: ``3d 4h``, ``5m 2s``."""
    if started is None:
        return "–"
    seconds = max(int((now or time.time()) - started), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def milliseconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def stamp(value: datetime | None) -> str:
    if value is None:
        return "–"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def segment(value: Any) -> str:
    """``value`` as one segment of a URL path, ``/`` escaped too: a name a backend chose (a
    tool's) must not add segments that aim a form at another action (``../restart``)."""
    return quote(str(value), safe="")


_env.filters.update(since=since, ms=milliseconds, stamp=stamp, pretty=pretty, segment=segment)


def fragment(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(fragment(template, **context), status_code=status)
