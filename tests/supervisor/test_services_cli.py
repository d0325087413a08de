"""`atrium infra services` and `plugins mcp status|logs` against a real background supervisor."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from atrium.settings import Settings
from tests.processes import alive, free_port
from tests.supervisor.conftest import ProjectFactory


def atrium(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "atrium", "--project", str(settings.project_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def running(fake_project: ProjectFactory) -> Iterator[Settings]:
    settings, _ = fake_project(one=[], two=[])
    started = atrium(settings, "infra", "services", "start", "--all", "--detach")
    assert started.returncode == 0, started.stderr
    try:
        yield settings
    finally:
        atrium(settings, "infra", "services", "stop")


def pids(settings: Settings) -> dict[str, int]:
    status = json.loads(atrium(settings, "plugins", "mcp", "status", "--json").stdout)
    return {row["name"]: row["pid"] for row in status if row["pid"]}


def test_status_shows_state_pid_port_uptime_restarts_and_binary(running: Settings) -> None:
    rows = json.loads(atrium(running, "plugins", "mcp", "status", "--json").stdout)

    one = next(row for row in rows if row["name"] == "one")
    assert one["state"] == "running"
    assert one["pid"] > 0
    assert one["uptime_s"] >= 0
    assert one["restarts"] == 0
    assert one["binary"] == sys.executable


def test_a_second_start_says_one_is_running_instead_of_starting_twice(running: Settings) -> None:
    before = pids(running)

    second = atrium(running, "start")

    assert second.returncode == 1
    assert "already running" in second.stderr
    assert pids(running) == before


def test_stop_of_one_server_then_start_of_it_again(running: Settings) -> None:
    first = pids(running)["one"]

    assert atrium(running, "infra", "services", "stop", "one").returncode == 0
    assert "one" not in pids(running)
    again = atrium(running, "infra", "services", "start", "one")

    assert again.returncode == 0, again.stderr
    assert pids(running)["one"] != first


def test_restart_gives_new_processes(running: Settings) -> None:
    before = pids(running)

    result = atrium(running, "infra", "services", "restart", "--all")

    assert result.returncode == 0, result.stderr
    after = pids(running)
    assert set(after) == {"one", "two"}
    assert not set(after.values()) & set(before.values())


def rows(settings: Settings) -> dict[str, dict[str, object]]:
    status = json.loads(atrium(settings, "infra", "services", "status", "--json").stdout)
    return {row["name"]: row for row in status["servers"]}


def test_restart_all_starts_a_server_added_since_and_stops_one_removed(
    running: Settings, fake_project: ProjectFactory
) -> None:
    two = pids(running)["two"]
    fake_project(three=[])  # a new YAML file beside the others
    (running.mcp_dir / "two.yaml").unlink()

    result = atrium(running, "infra", "services", "restart", "--all")

    assert result.returncode == 0, result.stderr
    assert "started three" in result.stdout
    assert "stopped two" in result.stdout
    assert set(pids(running)) == {"one", "three"}
    assert "two" not in rows(running)
    assert not alive(two)


def test_start_of_a_server_added_since_the_supervisor_started(
    running: Settings, fake_project: ProjectFactory
) -> None:
    fake_project(three=[])

    result = atrium(running, "infra", "services", "start", "three")

    assert result.returncode == 0, result.stderr
    assert rows(running)["three"]["state"] == "running"
    assert set(pids(running)) == {"one", "two", "three"}


def test_restart_of_one_server_restarts_another_whose_yaml_changed(running: Settings) -> None:
    before = pids(running)
    path = running.mcp_dir / "one.yaml"
    document = json.loads(path.read_text())
    document["mcp_servers"]["one"]["port"] = port = free_port()
    path.write_text(json.dumps(document))

    result = atrium(running, "infra", "services", "restart", "two")

    assert result.returncode == 0, result.stderr
    after = pids(running)
    assert after["one"] != before["one"]
    assert rows(running)["one"]["port"] == port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
        assert answer.status == 200


def test_a_yaml_that_no_longer_validates_is_refused_and_everything_keeps_running(
    running: Settings,
) -> None:
    before = pids(running)
    (running.mcp_dir / "broken.yaml").write_text("mcp_servers:\n  broken:\n    port: many\n")

    restart = atrium(running, "infra", "services", "restart", "--all")
    start = atrium(running, "infra", "services", "start", "one")

    assert restart.returncode != 0
    assert "broken.yaml" in restart.stderr
    assert "Traceback" not in restart.stderr
    assert start.returncode != 0
    assert "broken.yaml" in start.stderr
    (running.mcp_dir / "broken.yaml").unlink()  # the status command reads the YAML too
    assert pids(running) == before


def test_logs_shows_the_last_lines_of_the_servers_log(running: Settings) -> None:
    result = atrium(running, "plugins", "mcp", "logs", "one", "-n", "2")

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "GET /health" in result.stdout


def test_stop_all_ends_the_supervisor_and_every_server(fake_project: ProjectFactory) -> None:
    settings, _ = fake_project(one=[])
    assert atrium(settings, "infra", "services", "start", "--detach").returncode == 0
    server = pids(settings)["one"]

    result = atrium(settings, "infra", "services", "stop")

    assert result.returncode == 0
    assert "Stopped" in result.stdout
    assert not Path(f"/proc/{server}").exists()
    assert "not running" in atrium(settings, "infra", "services", "stop").stdout


def test_a_detached_start_that_fails_says_why(fake_project: ProjectFactory) -> None:
    settings, _ = fake_project(one=[])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.gateway_port))
        taken.listen()

        result = atrium(settings, "infra", "services", "start", "--detach")

    assert result.returncode == 1
    # The supervisor's last words, not only where its log is.
    said = f"port {settings.gateway_port} is already in use; the gateway cannot start"
    assert said in result.stderr
    assert "supervisor.log" in result.stderr
    assert "not running" in atrium(settings, "infra", "services", "stop").stdout


def test_logs_of_an_unknown_server_exits_1(fake_project: ProjectFactory) -> None:
    settings, _ = fake_project(one=[])

    result = atrium(settings, "plugins", "mcp", "logs", "nope")

    assert result.returncode == 1
    assert "server 'nope' not found; known: one" in result.stderr
