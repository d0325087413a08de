"""Usage over time for ``/admin/usage``: the audit trail summed per time bucket
(``AuditQueries.usage_over_time``) laid out as SVG charts drawn on the server: one line per
server (or per tool of one server) for calls, errors and mean latency, and stacked bars of
external vs in-app calls. Geometry lives in attributes; colours come from the stylesheet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from atrium.store.audit import UsagePoint

WIDTH, HEIGHT = 640, 180
LEFT, BOTTOM, TOP = 48, 22, 10
MAX_SERIES = 8
BUCKETS = {"1h": 300, "24h": 3600, "7d": 6 * 3600}


@dataclass(frozen=True)
class Line:
    label: str
    index: int
    points: str
    total: float


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    external_y: float
    external_height: float
    in_app_y: float
    in_app_height: float
    external: int
    in_app: int
    start: datetime


@dataclass(frozen=True)
class TimeChart:
    title: str
    unit: str
    lines: list[Line]
    bars: list[Bar]
    top: str
    first: str
    last: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    base: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not self.lines and not any(bar.external or bar.in_app for bar in self.bars)


def starts(since: datetime, until: datetime, bucket_s: int) -> list[datetime]:
    """Every bucket's start from the one holding ``since`` to the one holding ``until``."""
    first = datetime.fromtimestamp(int(since.timestamp()) // bucket_s * bucket_s, since.tzinfo)
    found, moment = [], first
    while moment <= until:
        found.append(moment)
        moment += timedelta(seconds=bucket_s)
    return found


def label_of(point: UsagePoint) -> str:
    return "/".join(str(value or "–") for value in point.keys.values())


@dataclass(frozen=True)
class Series:
    """The points of each group (a server, or a tool of one), by bucket start, and the busiest
    ``MAX_SERIES`` groups, most calls first: grouped once for every chart drawn from them."""

    by_group: dict[str, dict[datetime, UsagePoint]]
    chosen: list[str]


def series(points: list[UsagePoint]) -> Series:
    """``points`` by group, leaving out those of every other group summed (``busiest``)."""
    by_group: dict[str, dict[datetime, UsagePoint]] = {}
    calls: dict[str, int] = {}
    for point in points:
        if all(value is None for value in point.keys.values()):
            continue  # in the totals of ``origin_bars``, never a line of its own
        label = label_of(point)
        by_group.setdefault(label, {})[point.start] = point
        calls[label] = calls.get(label, 0) + point.requests
    chosen = sorted(calls, key=lambda label: (-calls[label], label))[:MAX_SERIES]
    return Series(by_group, chosen)


def _x(index: int, count: int) -> float:
    return LEFT + (WIDTH - LEFT - 8) * (index / max(count - 1, 1))


def _y(value: float, top: float) -> float:
    return HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) * (value / top if top else 0.0)


def _stamp(moment: datetime, bucket_s: int) -> str:
    return moment.strftime("%H:%M" if bucket_s < 6 * 3600 else "%m-%d %H:%M")


def lines(
    title: str,
    unit: str,
    grouped: Series,
    buckets: list[datetime],
    bucket_s: int,
    value: Callable[[UsagePoint], float],
) -> TimeChart:
    """One line per group (the busiest ``MAX_SERIES``), a value per bucket (0 when none)."""
    chosen = [(label, grouped.by_group[label]) for label in grouped.chosen]
    top = max((value(point) for _, points in chosen for point in points.values()), default=0.0)
    drawn = []
    for index, (label, points) in enumerate(chosen):
        values = [value(points[start]) if start in points else 0.0 for start in buckets]
        coordinates = " ".join(
            f"{_x(i, len(buckets)):.1f},{_y(v, top):.1f}" for i, v in enumerate(values)
        )
        drawn.append(Line(label, index, coordinates, sum(values)))
    return _chart(title, unit, drawn, [], top, buckets, bucket_s)


def origin_bars(
    title: str, points: list[UsagePoint], buckets: list[datetime], bucket_s: int
) -> TimeChart:
    """Calls per bucket, every group together, external under in-app."""
    external = dict.fromkeys(buckets, 0)
    in_app = dict.fromkeys(buckets, 0)
    for point in points:
        if point.start in external:
            external[point.start] += point.external
            in_app[point.start] += point.in_app
    top = max((external[s] + in_app[s] for s in buckets), default=0)
    step = (WIDTH - LEFT - 8) / max(len(buckets), 1)
    bars = []
    for index, start in enumerate(buckets):
        low, high = _y(external[start], top), _y(external[start] + in_app[start], top)
        bars.append(
            Bar(
                x=LEFT + index * step + 1,
                width=max(step - 2, 1),
                external_y=low,
                external_height=HEIGHT - BOTTOM - low,
                in_app_y=high,
                in_app_height=low - high,
                external=external[start],
                in_app=in_app[start],
                start=start,
            )
        )
    return _chart(title, "calls", [], bars, top, buckets, bucket_s)


def _chart(
    title: str,
    unit: str,
    drawn: list[Line],
    bars: list[Bar],
    top: float,
    buckets: list[datetime],
    bucket_s: int,
) -> TimeChart:
    shown = f"{top:.0f}" if top >= 10 or float(top).is_integer() else f"{top:.1f}"
    return TimeChart(
        title=title,
        unit=unit,
        lines=drawn,
        bars=bars,
        top=shown,
        first=_stamp(buckets[0], bucket_s) if buckets else "",
        last=_stamp(buckets[-1], bucket_s) if buckets else "",
    )
