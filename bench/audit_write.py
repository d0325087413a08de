"""The audit writer's cost per record on SQLite (issue 17): through SQLAlchemy on aiosqlite, and
in one hop to a thread of its own (``atrium.store.audit_sqlite``), in one run.

    .venv/bin/python bench/audit_write.py [--batch 25] [--batches 200]

Each way writes ``--batches`` batches of ``--batch`` records (the size the gateway's writer
takes at ~500 calls a second, lingering 50 ms) into a fresh store, after a few to warm up,
and prints the CPU time of this process (every thread: the event loop's and the database's)
per record, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from atrium.settings import load_settings
from atrium.store import Store
from atrium.store.audit import AuditEvent, AuditQueries

WARM_UP = 5


def records(count: int, prefix: str) -> list[AuditEvent]:
    """``tools/call`` records as a signed-in caller's make them."""
    return [
        AuditEvent(
            request_id=f"{prefix}-{n:08d}",
            server="everything",
            method="tools/call",
            tool="echo",
            arguments={"text": "hello world"},
            caller="user:admin",
            subject="admin",
            client_id="atrium-cli",
            duration_ms=1.5 + n % 7,
        )
        for n in range(count)
    ]


async def cpu_per_record(folder: Path, *, direct: bool, batch: int, batches: int) -> float:
    settings = load_settings(folder, environ={})
    async with await Store.open(settings) as store:
        queries = AuditQueries(store.engine, direct=direct)
        try:
            for n in range(WARM_UP):
                await queries.add_many(records(batch, f"warm{n}"))
            made = [records(batch, f"b{n}") for n in range(batches)]
            started = time.process_time()
            for each in made:
                await queries.add_many(each)
            return (time.process_time() - started) / (batch * batches)
        finally:
            await queries.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = {
            direct: await cpu_per_record(
                Path(folder) / str(direct), direct=direct, batch=args.batch, batches=args.batches
            )
            for direct in (False, True)
        }
    print(f"audit writer, SQLite, {args.batch} records a batch, CPU per record:")
    print(f"  through SQLAlchemy (aiosqlite)  {figures[False] * 1e6:7.1f} µs")
    print(f"  one hop (sqlite3, own thread)   {figures[True] * 1e6:7.1f} µs")
    print(f"  ratio                           {figures[True] / figures[False]:7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
