"""``atrium gateway --workers N`` as an operator runs it: the parent a process of its own, which
a service manager stops with SIGTERM, or kills."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from atrium.store import Store
from tests.gateway.conftest import Backend
from tests.gateway.helpers import call_body, messages, modern_headers, save_servers
from tests.gateway.test_workers import FRESH, workers_project
from tests.polling import until, wait_until
from tests.processes import alive, free_port

START_S = 120.0  # three interpreters importing the gateway on a busy machine


def atrium(project: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "atrium", "--project", str(project), *argv]


@contextmanager
def started(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The process until the block ends; killed then if it is still running."""
    env = {**os.environ, "NO_COLOR": "1"}
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rfind(")") + 2 :].split()[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def serving(base: str, parent: subprocess.Popen[bytes], log: Path) -> set[int]:
    """The parent's two workers, once the gateway answers; fails at once if the parent exits."""

    def ready() -> set[int] | None:
        if parent.poll() is not None:
            raise AssertionError(f"the gateway exited: {log.read_text()[-3000:]}")
        try:
            healthy = httpx2.get(f"{base}/health", timeout=2).status_code == 200
        except httpx2.HTTPError:
            return None
        workers = children(parent.pid)
        return workers if healthy and len(workers) == 2 else None

    return wait_until(ready, what="two gateway workers", timeout_s=START_S)


def test_two_workers_without_redis_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    workers_project(tmp_path, redis_url=None)
    done = subprocess.run(
        atrium(tmp_path, "gateway"), capture_output=True, text=True, timeout=START_S
    )
    assert done.returncode == 2
    assert "gateway.workers" in done.stderr
    assert "redis.url" in done.stderr
    assert "Traceback" not in done.stderr

    wrong = subprocess.run(
        atrium(tmp_path, "gateway", "--workers", "two"),
        capture_output=True,
        text=True,
        timeout=START_S,
    )
    assert wrong.returncode == 2
    assert "--workers two" in wrong.stderr
    assert "Traceback" not in wrong.stderr


async def test_sigterm_to_the_parent_lets_every_worker_finish_its_calls_then_stops_them(
    tmp_path: Path, backend: Backend, redis_url: str, redis_prefix: str
) -> None:
    settings = workers_project(tmp_path, redis_url, redis_prefix, workers=1)
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
    base = f"http://127.0.0.1:{settings.gateway_port}"
    log = tmp_path / "gateway.out"
    with started(atrium(tmp_path, "gateway", "--workers", "2"), log) as parent:
        workers = await asyncio.to_thread(serving, base, parent, log)
        tags = [f"drained-{n}" for n in range(6)]
        async with httpx2.AsyncClient(timeout=60) as http:
            calls = [
                asyncio.ensure_future(
                    http.post(
                        f"{base}/api/v1/mcp/tools/mcp",
                        content=call_body("slow", {"seconds": 2, "tag": tag}),
                        headers={**modern_headers("tools/call", "slow"), **FRESH},
                    )
                )
                for tag in tags
            ]
            await until(lambda: set(tags) <= backend.witness.started, what="every call running")
            parent.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*calls)
        code = await asyncio.to_thread(parent.wait, 60)

    assert code == 0, log.read_text()[-3000:]
    for answer in answers:
        assert answer.status_code == 200
        (message,) = messages(answer)
        assert message["result"]["content"][0]["text"] == "slept 2 s"
    assert backend.witness.finished >= set(tags)
    assert not backend.witness.cancelled
    assert not any(alive(pid) for pid in workers)
    assert not listening(settings.gateway_port)


def test_the_workers_die_with_their_parent(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = workers_project(tmp_path, redis_url, redis_prefix)
    log = tmp_path / "gateway.out"
    with started(atrium(tmp_path, "gateway"), log) as parent:
        workers = serving(f"http://127.0.0.1:{settings.gateway_port}", parent, log)
        parent.kill()  # SIGKILL: the parent cannot stop them itself
        parent.wait(30)
        wait_until(
            lambda: not any(alive(pid) for pid in workers),
            what="the workers to exit",
            timeout_s=30,
        )
    assert not listening(settings.gateway_port)
