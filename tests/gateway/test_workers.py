"""``gateway.workers``: N gateway processes on one port (issue 17). Here the test is the parent
(``WorkerPool`` in its event loop) and the workers are real processes, serving a real socket.

Each test starts its own two workers: SQLite, Redis (which more than one worker needs), and a
poll of an hour, so that nothing here reaches a worker by the poll.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from atrium.auth.operator import OPERATOR_CLIENT_ID
from atrium.errors import ConfigError
from atrium.gateway.workers import WorkerPool, worker_count
from atrium.settings import Settings, load_settings
from atrium.store import Store
from tests.conftest import POSTGRES_URL
from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    call_body,
    modern_headers,
    running_gateway,
    save_servers,
    server_record,
)
from tests.polling import until
from tests.processes import alive, free_port

FRESH = {"Connection": "close"}  # a connection per call: each is accepted by either worker
LIST = b'{"jsonrpc":"2.0","method":"tools/list","id":1}'


@dataclass
class Pool:
    base: str
    store: Store
    workers: WorkerPool

    async def call(self, http: httpx2.AsyncClient, text: str = "hi") -> httpx2.Response:
        headers = {**modern_headers("tools/call", "echo"), **FRESH}
        body = call_body("echo", {"text": text})
        return await http.post(f"{self.base}/api/v1/mcp/tools/mcp", content=body, headers=headers)

    async def list_signed(self, http: httpx2.AsyncClient, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **FRESH}
        url = f"{self.base}/api/v1/mcp/signed/mcp"
        return (await http.post(url, content=LIST, headers=headers)).status_code

    async def counted(self, http: httpx2.AsyncClient) -> Counter[str]:
        """``tools/call`` requests of server ``tools`` by ``replica`` label, as /metrics says."""
        text = (await http.get(f"{self.base}/metrics", headers=FRESH)).text
        counts: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "atrium_gateway_requests_total" and labels["server"] == "tools":
                    counts[labels["replica"]] += int(sample.value)
        return counts


def workers_project(
    tmp_path: Path,
    redis_url: str | None,
    prefix: str = "x",
    workers: int = 2,
    environ: dict[str, str] | None = None,
) -> Settings:
    redis = f"redis:\n  url: {redis_url}\n  key_prefix: {prefix}\n" if redis_url else ""
    (tmp_path / "atrium.yaml").write_text(
        f"gateway:\n  port: {free_port()}\n  workers: {workers}\n  poll_s: 3600\n"
        f"  shutdown_grace_s: 5\n{redis}"
    )
    return load_settings(tmp_path, environ=environ or {})


@pytest.fixture
def shared(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[Settings]:
    """SQLite, or (``indirect`` parametrization) a PostgreSQL schema of the test's own (the
    session drops it with the run's others)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield workers_project(tmp_path, redis_url, redis_prefix)
        return
    schema = f"{request.getfixturevalue('postgres_schema_prefix')}_{uuid.uuid4().hex[:8]}"
    environ = {"ATRIUM_DATABASE_URL": POSTGRES_URL, "ATRIUM_DATABASE_SCHEMA": schema}
    yield workers_project(tmp_path, redis_url, redis_prefix, environ=environ)


@pytest.fixture
async def pool(shared: Settings, backend: Backend) -> AsyncIterator[Pool]:
    async with await Store.open(shared) as store:
        await save_servers(store, backend.port, free_port())
        signed = {"port": backend.port, "oauth": {"required": True}}
        await store.servers.save([server_record("signed", signed)])
        workers = WorkerPool(shared, worker_count(shared))
        await workers.start()
        try:
            yield Pool(f"http://127.0.0.1:{shared.gateway_port}", store, workers)
        finally:
            await workers.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


async def test_two_worker_processes_serve_the_port_and_metrics_count_each_call_once(
    pool: Pool, backend: Backend, http: httpx2.AsyncClient
) -> None:
    pids = pool.workers.pids
    assert len(set(pids)) == 2
    assert os.getpid() not in pids
    assert all(alive(pid) for pid in pids)
    calls = 40
    for number in range(calls):
        assert (await pool.call(http, f"call {number}")).status_code == 200

    async def every_call_counted() -> Counter[str] | None:
        counts = await pool.counted(http)
        return counts if sum(counts.values()) == calls else None

    # Whichever worker answers the scrape, it counts the other's calls too (within 0.5 s).
    counts = await until(every_call_counted, what=f"{calls} calls in /metrics", timeout_s=15)
    base = f"{socket.gethostname()}:{os.getpid()}"
    assert set(counts) == {f"{base}/0", f"{base}/1"}  # each worker served, under its own label
    assert all(count > 0 for count in counts.values())
    assert backend.witness.calls["echo"] == calls


async def test_a_killed_worker_is_started_again_and_the_port_answers_meanwhile(
    pool: Pool, http: httpx2.AsyncClient
) -> None:
    victim, survivor = pool.workers.pids
    os.kill(victim, signal.SIGKILL)
    await until(lambda: pool.workers.serving == 1, what="the pool to see the worker die")

    answered = 0
    deadline = time.monotonic() + 120  # a fresh interpreter imports the gateway: seconds
    while pool.workers.serving < 2:
        assert (await pool.call(http)).status_code == 200
        answered += 1
        assert time.monotonic() < deadline, "the killed worker was not started again"
        await asyncio.sleep(0.05)
    assert answered > 0
    (restarted,) = set(pool.workers.pids) - {survivor}
    assert restarted != victim
    assert alive(restarted)
    assert not alive(victim)

    async def the_new_worker_serves() -> bool:
        assert (await pool.call(http)).status_code == 200
        counts = await pool.counted(http)  # every call so far was the survivor's, but these
        return any(label.endswith("/0") and n > 0 for label, n in counts.items())

    await until(the_new_worker_serves, what="a call served by the new worker", timeout_s=20)


@pytest.mark.parametrize(
    "shared", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_revocation_reaches_every_worker_at_once(
    pool: Pool, shared: Settings, http: httpx2.AsyncClient
) -> None:
    async with running_gateway(shared, pool.store) as lone:  # mints with the store's keys
        tokens = [
            lone.token("signed", "tools:read", subject=name, client_id=OPERATOR_CLIENT_ID)
            for name in ("alice", "bob")
        ]
        alice = lone.parts.auth.verifier.verify(tokens[0]).jti
    for token in tokens:
        assert {await pool.list_signed(http, token) for _ in range(10)} == {200}

    # `atrium admin token revoke`: the store, then the supervisor asks the gateway to reload.
    await pool.store.grants.revoke_jti(alice, datetime.now(UTC) + timedelta(minutes=10))
    await pool.workers.reload_auth()
    assert {await pool.list_signed(http, tokens[0]) for _ in range(20)} == {401}

    # RFC 7009 at whichever worker takes it: the other hears of it through the parent.
    revoked = await http.post(
        f"{pool.base}/api/v1/core/oauth/revoke",
        data={"client_id": OPERATOR_CLIENT_ID, "token": tokens[1]},
        headers=FRESH,
    )
    assert revoked.status_code == 200

    async def refused_everywhere() -> bool:
        return {await pool.list_signed(http, tokens[1]) for _ in range(20)} == {401}

    await until(refused_everywhere, what="bob's token refused by both workers", timeout_s=2)


def test_more_than_one_worker_without_redis_is_refused(tmp_path: Path) -> None:
    settings = workers_project(tmp_path, redis_url=None)
    with pytest.raises(ConfigError) as refused:
        worker_count(settings)
    (problem,) = refused.value.problems
    assert problem.key_path == "gateway.workers"
    assert "redis.url" in problem.message


def test_auto_is_one_worker_per_usable_cpu(tmp_path: Path, redis_url: str) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    (tmp_path / "atrium.yaml").write_text("gateway:\n  workers: auto\n")
    alone = load_settings(tmp_path, environ={})
    shared = load_settings(tmp_path, environ={"ATRIUM_REDIS_URL": redis_url})
    try:
        os.sched_setaffinity(0, cpus[:1])
        assert worker_count(alone) == 1  # one CPU: one worker, which needs no Redis
        os.sched_setaffinity(0, cpus)
        assert worker_count(shared) == len(cpus)
        if len(cpus) > 1:
            with pytest.raises(ConfigError):
                worker_count(alone)
    finally:
        os.sched_setaffinity(0, cpus)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "true", "1025"])
def test_a_workers_setting_that_is_no_count_names_the_key(tmp_path: Path, value: str) -> None:
    (tmp_path / "atrium.yaml").write_text(f"gateway:\n  workers: {value}\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(tmp_path, environ={})
    (problem,) = refused.value.problems
    assert problem.key_path == "gateway.workers"
