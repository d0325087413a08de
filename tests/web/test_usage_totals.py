"""The usage page shows what the audit table says: its totals are counts of the table's rows,
for every window, an admin's (everyone's) and a user's (their own), on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from atrium.auth.hashing import hash_password
from atrium.gateway.app import create_app
from atrium.settings import Settings
from atrium.store import Store, UserRecord
from atrium.store.audit import AuditEvent
from atrium.store.rollup import BINS_PER_E
from atrium.store.tables import audit_events
from atrium.web.session import SESSION_COOKIE, Sessions
from atrium.web.usage import WINDOWS
from tests.gateway.helpers import server_record

ROW = re.compile(
    r'<tr><th scope="row">([^<]+)</th><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>'
    r"<td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>"
)
SERVERS = ("alpha", "beta", "gamma")
MARGIN = timedelta(minutes=5)  # no row this near a window's start: the page's clock is later


def random_events(now: datetime, subjects: list[str | None]) -> list[AuditEvent]:
    rng = random.Random(16)
    edges = [now - window for window in WINDOWS.values()]
    events: list[AuditEvent] = []
    while len(events) < 300:
        at = now - timedelta(seconds=rng.uniform(30, 8 * 86400))
        if any(abs(at - edge) < MARGIN for edge in edges):
            continue
        tool = rng.choice([None, "echo", "peek", "sum"])
        events.append(
            AuditEvent(
                request_id=uuid.uuid4().hex,
                server=rng.choice(SERVERS),
                method="tools/call" if tool else "tools/list",
                tool=tool,
                subject=rng.choice(subjects),
                origin=rng.choice(["external", "in-app"]),
                outcome=rng.choice(["ok", "ok", "tool_error", "jsonrpc_error"]),
                at=at,
                duration_ms=rng.lognormvariate(2.0, 1.0),
            )
        )
    return events


@pytest.fixture
async def store(database_settings: Settings) -> AsyncIterator[Store]:
    async with await Store.open(database_settings) as opened:
        records = [
            server_record(name, {"port": 5999, "oauth": {"required": True}}) for name in SERVERS
        ]
        await opened.servers.save(records)
        yield opened


async def shown(settings: Settings, store: Store, user: UserRecord, window: str) -> list[Any]:
    """The rows of the usage page's two tables (per server, per server/tool) as ``user``."""
    app = create_app(settings, store=store, poll_s=3600)
    async with app.router.lifespan_context(app):
        cookie = Sessions(app.parts.auth).cookie_value(user)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(
            transport=transport, base_url=settings.public_url, cookies={SESSION_COOKIE: cookie}
        ) as http:
            page = await http.get("/admin/usage", params={"window": window})
    assert page.status_code == 200, page.text
    return ROW.findall(page.text)


def milliseconds(text: str) -> float:
    return float(text.removesuffix(" ms"))


def nearest_rank(durations: list[float], percent: int) -> float:
    ordered = sorted(durations)
    return ordered[max((percent * len(ordered) + 99) // 100, 1) - 1]


def assert_close(text: str, exact: float) -> None:
    """A latency as the page writes it: within a histogram bin of ``exact``, then rounded."""
    rounding = 0.5 if exact >= 10 else 0.05
    assert abs(milliseconds(text) - exact) <= exact * (math.exp(1 / BINS_PER_E) - 1) + rounding


async def user(store: Store, role: str) -> UserRecord:
    record = UserRecord(
        id=uuid.uuid4().hex, username=role, password_hash=hash_password("x" * 12), role=role
    )
    await store.users.add(record)
    return record


@pytest.mark.parametrize("window", list(WINDOWS))
async def test_the_pages_totals_are_counts_of_the_audit_table(
    database_settings: Settings, store: Store, window: str
) -> None:
    admin, ada = await user(store, "admin"), await user(store, "user")
    now = datetime.now(UTC)
    await store.audit.add_many(random_events(now, [None, admin.id, ada.id, "someone-else"]))
    async with store.engine.connect() as conn:
        table = (await conn.execute(select(audit_events))).all()
    since = now - WINDOWS[window]

    for viewer, subject in ((admin, None), (ada, ada.id)):
        rows = [r for r in table if r.at >= since and subject in (None, r.subject)]
        groups: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            groups[row.server].append(row)
            if row.tool is not None:
                groups[f"{row.server}/{row.tool}"].append(row)

        found = await shown(database_settings, store, viewer, window)

        assert sorted(label for label, *_ in found) == sorted(groups), (window, viewer.role)
        for label, calls, external, in_app, errors, p50, p95, most in found:
            mine = groups[label]
            assert int(calls) == len(mine)
            assert int(in_app) == sum(r.origin == "in-app" for r in mine)
            assert int(external) == sum(r.origin == "external" for r in mine)
            assert int(errors) == sum(r.outcome != "ok" for r in mine)
            durations = [r.duration_ms for r in mine]
            assert_close(p50, nearest_rank(durations, 50))
            assert_close(p95, nearest_rank(durations, 95))
            assert_close(most, max(durations))
