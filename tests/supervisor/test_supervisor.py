"""The supervisor keeps servers up: start, health, restart with backoff, failure, stop, reaping."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from atrium.errors import AtriumError
from atrium.registry.loader import load_registry
from atrium.registry.schema import port_of
from atrium.runstate import read_state
from atrium.settings import load_settings
from atrium.supervisor.supervisor import RestartPolicy, Supervisor
from tests.polling import until
from tests.processes import alive
from tests.supervisor.conftest import ProjectFactory

FAST = RestartPolicy(max_crashes=3, window_s=30, backoff_base_s=0.05, health_deadline_s=10)


def environ_of(pid: int | None) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


async def test_start_runs_each_enabled_server_until_healthy(fake_project: ProjectFactory) -> None:
    settings, registry = fake_project(one=[], two=[])
    supervisor = Supervisor(settings, registry, FAST)
    try:
        results = await supervisor.start()
        assert results == {"one": None, "two": None}
        state = read_state(settings.state_dir)
        assert state is None  # no lock held: only a running supervisor's state is read
        one = supervisor.state.servers["one"]
        assert (one.state, one.restarts) == ("running", 0)
        assert one.pid is not None
        assert alive(one.pid)
    finally:
        await supervisor.close()


async def test_a_killed_server_is_restarted_with_a_new_pid(fake_project: ProjectFactory) -> None:
    settings, registry = fake_project(one=[])
    supervisor = Supervisor(settings, registry, FAST)
    try:
        await supervisor.start()
        first = supervisor.state.servers["one"].pid
        assert first is not None

        os.kill(first, signal.SIGKILL)
        await until(lambda: supervisor.state.servers["one"].restarts == 1, what="the restart")
        await until(lambda: supervisor.state.servers["one"].state == "running", what="one running")

        second = supervisor.state.servers["one"].pid
        assert second is not None
        assert second != first
        assert alive(second)
    finally:
        await supervisor.close()


async def test_a_server_that_keeps_crashing_is_marked_failed(fake_project: ProjectFactory) -> None:
    settings, registry = fake_project(flaky=["--crash-after", "0.3"])
    supervisor = Supervisor(settings, registry, FAST)
    try:
        await supervisor.start()

        await until(
            lambda: supervisor.state.servers["flaky"].state == "failed",
            what="flaky failed",
            timeout_s=20,
        )

        status = supervisor.state.servers["flaky"]
        assert status.restarts == FAST.max_crashes - 1
        assert "3 crashes" in str(status.last_error)
        assert status.pid is None
    finally:
        await supervisor.close()


async def test_a_server_never_healthy_fails_with_its_last_log_lines(
    fake_project: ProjectFactory,
) -> None:
    settings, registry = fake_project(sick=["--never-healthy"])
    policy = RestartPolicy(health_deadline_s=1.0)
    supervisor = Supervisor(settings, registry, policy)
    try:
        results = await supervisor.start()
    finally:
        await supervisor.close()

    error = str(results["sick"])
    assert "server 'sick' was not healthy within 1 s" in error
    assert "GET /health" in error  # the fake server's own log line, from logs/mcp-sick.log
    assert supervisor.state.servers["sick"].state == "failed"


async def test_a_port_in_use_is_an_error_naming_the_port(fake_project: ProjectFactory) -> None:
    settings, registry = fake_project(one=[])
    port = port_of(registry.get("one").config)
    assert port is not None
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    supervisor = Supervisor(settings, registry, FAST)
    try:
        results = await supervisor.start()
    finally:
        await supervisor.close()
        blocker.close()
        await blocker.wait_closed()

    assert f"port {port} is already in use" in str(results["one"])


async def test_servers_get_only_allow_listed_environment(fake_project: ProjectFactory) -> None:
    settings, registry = fake_project(
        environ={"SECRET": "gateway-only", "ATRIUM_DATABASE_URL": "postgresql://x@y/z"}, one=[]
    )
    supervisor = Supervisor(settings, registry, FAST)
    try:
        await supervisor.start()
        pid = supervisor.state.servers["one"].pid
        environ = environ_of(pid)
    finally:
        await supervisor.close()

    assert b"PATH=/usr/bin:/bin" in environ
    assert not any(v.startswith((b"SECRET=", b"ATRIUM_DATABASE_URL=")) for v in environ)
    assert b"ATRIUM_SERVER_NAME=one" in environ


async def test_close_stops_every_server_and_reaps_orphaned_grandchildren(
    fake_project: ProjectFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "grandchild.pid"
    settings, registry = fake_project(parent=["--grandchild", str(marker)])
    supervisor = Supervisor(settings, registry, FAST)
    try:
        await supervisor.start()
        server = supervisor.state.servers["parent"].pid
        assert server is not None
        grandchild = int(marker.read_text())
        assert alive(grandchild)

        # The grandchild left the server's process group (setsid), so only reaping catches it.
        os.kill(server, signal.SIGKILL)
        await until(lambda: not alive(grandchild), what="the grandchild to be gone")
        await until(
            lambda: supervisor.state.servers["parent"].state == "running", what="parent running"
        )
        restarted = supervisor.state.servers["parent"].pid
        assert restarted is not None
    finally:
        await supervisor.close()

    assert not alive(restarted)
    assert not alive(int(marker.read_text()))


async def test_stopping_one_server_leaves_the_others_running(fake_project: ProjectFactory) -> None:
    settings, registry = fake_project(one=[], two=[])
    supervisor = Supervisor(settings, registry, FAST)
    try:
        await supervisor.start()
        one = supervisor.state.servers["one"].pid
        assert one is not None

        await supervisor.stop(["one"])

        assert supervisor.state.servers["one"].state == "stopped"
        assert not alive(one)
        assert supervisor.state.servers["two"].state == "running"
    finally:
        await supervisor.close()


async def test_a_remote_server_has_no_process_to_start(tmp_path: Path) -> None:
    (tmp_path / "services/mcp").mkdir(parents=True)
    (tmp_path / "services/mcp/r.yaml").write_text(
        "mcp_servers:\n  r:\n    transport: remote\n    url: http://127.0.0.1:9/mcp\n"
    )
    settings = load_settings(tmp_path, environ={})
    supervisor = Supervisor(settings, load_registry(settings), FAST)

    assert await supervisor.start() == {}
    with pytest.raises(AtriumError, match="remote"):
        await supervisor.start(["r"])
