"""The web console's server time per page with 100 servers and 100,000 audit rows (issue 16:
"a page renders in ≤ 100 ms server time").

    .venv/bin/python bench/console.py [--servers 100] [--rows 100000] [--repeat 20]

Fills a fresh SQLite store (the servers through the store's own API; the audit rows spread
over the last 30 days, 20 tools per server and five callers, by the audit writer's batch
insert), starts the gateway app in this process (its lifespan, as ``atrium start`` runs it),
signs an admin in with a session cookie made as the console makes it, then renders each page
through ``httpx.ASGITransport`` and prints the median and worst time per page, the median CPU
time of this process (on a shared machine the time waits for CPUs too; the load average is
printed first) and the ratio of the median to 100 ms. The skills and secrets pages are left
out: they are calls to the marketplace server, a process of its own, and their time is that of
its tools. Each row of the store is a request of its own hour, server, tool and caller, so the
audit writer's hourly sums (``atrium.store.rollup``) are as many as the rows: the worst case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2

from atrium.auth.hashing import hash_password
from atrium.gateway.app import create_app
from atrium.registry.schema import parse_server_config
from atrium.registry.sync import record_for
from atrium.settings import load_settings
from atrium.store import Store, UserRecord
from atrium.store.audit import AuditEvent
from atrium.web.session import SESSION_COOKIE, Sessions

BUDGET_MS = 100.0
BATCH = 5_000
DAYS = 30


def servers(count: int) -> list[str]:
    return [f"s{index:03d}" for index in range(count)]


def audit_rows(names: list[str], count: int, subjects: list[str]) -> list[AuditEvent]:
    rng = random.Random(16)
    now = datetime.now(UTC)
    span = timedelta(days=DAYS).total_seconds()
    rows = []
    for index in range(count):
        failed = rng.random() < 0.05
        rows.append(
            AuditEvent(
                request_id=uuid.uuid4().hex,
                server=rng.choice(names),
                method="tools/call",
                tool=f"tool_{rng.randrange(20):02d}",
                arguments={"n": index},
                subject=rng.choice(subjects),
                caller="bench",
                client_id="atrium-console" if rng.random() < 0.3 else "cli",
                origin="in-app" if rng.random() < 0.3 else "external",
                outcome="tool_error" if failed else "ok",
                at=now - timedelta(seconds=span * (count - index) / count),
                duration_ms=rng.lognormvariate(2.5, 0.8),
            )
        )
    return rows


async def fill(store: Store, names: list[str], rows: int) -> tuple[UserRecord, str]:
    records = [
        record_for(name, parse_server_config({"binary": "x", "port": 5000 + i}), None)
        for i, name in enumerate(names)
    ]
    await store.servers.save(records)
    admin = UserRecord(
        id=uuid.uuid4().hex, username="admin", password_hash=hash_password("x" * 12), role="admin"
    )
    await store.users.add(admin)
    subjects = [admin.id] + [uuid.uuid4().hex for _ in range(4)]
    events = audit_rows(names, rows, subjects)
    for start in range(0, len(events), BATCH):
        await store.audit.add_many(events[start : start + BATCH])
    return admin, events[len(events) // 2].request_id


def pages(names: list[str], request_id: str) -> list[str]:
    first = names[0]
    return [
        "/admin",
        f"/admin/servers/{first}",
        "/admin/audit",
        f"/admin/audit?server={names[len(names) // 2]}",
        "/admin/audit?tool=tool_07&outcome=tool_error",
        f"/admin/audit/{request_id}",
        "/admin/usage?window=1h",
        "/admin/usage?window=24h",
        "/admin/usage?window=7d",
        f"/admin/usage?window=7d&server={first}",
        "/admin/agents",
        "/admin/users",
        "/admin/clients",
    ]


async def measure(
    http: httpx2.AsyncClient, path: str, repeat: int
) -> tuple[list[float], list[float]]:
    """Each request's time, and the CPU time this process spent on it (every thread's: the
    database driver's too), which other processes on the machine change less."""
    answer = await http.get(path)  # warm: templates compiled, caches filled
    if answer.status_code != 200:
        raise SystemExit(f"{path}: {answer.status_code}\n{answer.text[:2000]}")
    times, cpu = [], []
    for _ in range(repeat):
        started, used = time.perf_counter(), time.process_time()
        await http.get(path)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
    return times, cpu


async def run(count: int, rows: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "atrium.yaml").write_text("gateway:\n  port: 18080\n")
        settings = load_settings(project, environ={})
        async with await Store.open(settings) as store:
            names = servers(count)
            started = time.perf_counter()
            admin, request_id = await fill(store, names, rows)
            took = time.perf_counter() - started
            print(f"filled: {count} servers, {rows} audit rows in {took:.1f} s")
            app = create_app(settings, store=store, poll_s=3600)
            async with app.router.lifespan_context(app):
                cookie = Sessions(app.parts.auth).cookie_value(admin)
                transport = httpx2.ASGITransport(app=app)
                async with httpx2.AsyncClient(
                    transport=transport,
                    base_url=settings.public_url,
                    cookies={SESSION_COOKIE: cookie},
                ) as http:
                    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
                    print(f"{'page':52} {'median':>9} {'worst':>9} {'cpu':>9} {'/100 ms':>8}")
                    for path in pages(names, request_id):
                        times, cpu = await measure(http, path, repeat)
                        median = statistics.median(times)
                        print(
                            f"{path:52} {median:7.1f}ms {max(times):7.1f}ms"
                            f" {statistics.median(cpu):7.1f}ms {median / BUDGET_MS:8.2f}"
                        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(arguments.servers, arguments.rows, arguments.repeat))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
