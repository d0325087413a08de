"""deploy/haproxy/haproxy.cfg: a valid configuration, and, run for real on loopback in front of
two ``atrium gateway`` replicas, round robin over both, forwarded headers a client cannot forge,
and a replica killed under calls in flight costing only the calls that had reached it, none of
them sent twice."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.deploy.cluster import (
    HAPROXY_CONFIG,
    atrium,
    haproxy,
    haproxy_environment,
    healthy,
    routed,
    started,
    tail,
)
from tests.polling import wait_until
from tests.processes import free_port, only_builtins

SLOW = Path(__file__).with_name("slow_server.py")
ONE_SHOT = {"Content-Type": "application/json"}
IN_FLIGHT = 4  # slow calls running when a replica is killed: round robin gives each replica two
AFTER_KILL = 20
REPLICAS = (
    "replica1",
    "replica2",
)  # calls sent once it is dead, while HAProxy still counts it as up


def test_the_haproxy_example_is_valid_with_the_replica_addresses_filled_in() -> None:
    env = haproxy_environment(f"127.0.0.1:{free_port()}", [free_port(), free_port()])

    checked = subprocess.run(
        [haproxy(), "-c", "-f", str(HAPROXY_CONFIG)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout
    assert "WARNING" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def test_the_haproxy_example_names_no_replica_by_itself() -> None:
    env = haproxy_environment(f"127.0.0.1:{free_port()}", [])  # no ATRIUM_REPLICA_1 or _2

    checked = subprocess.run(
        [haproxy(), "-c", "-f", str(HAPROXY_CONFIG)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert checked.returncode != 0
    assert "'server' expects <name> and <addr>" in checked.stderr


@dataclass(frozen=True)
class Cluster:
    """Two gateway replicas of one project (one store, one backend supervisor) behind HAProxy."""

    project: Path
    url: str  # HAProxy's
    replicas: list[subprocess.Popen[str]]
    arrivals: Path  # the labels of the calls the slow server received, in order
    haproxy_log: Path
    env: dict[str, str]

    def token(self, server: str) -> str:
        issue = ["admin", "token", "issue", "--user", "admin", "--server", server]
        done = subprocess.run(
            [*atrium(self.project), *issue],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip().splitlines()[-1]

    def arrived(self) -> list[str]:
        return self.arrivals.read_text().split() if self.arrivals.exists() else []


@contextmanager
def cluster(tmp_path: Path, settings: Mapping[str, str] | None = None) -> Iterator[Cluster]:
    """``atrium init``, a slow server of the user's, ``cloud sync`` to the store, the backends
    under ``infra services start mcp``, two ``atrium gateway`` replicas, HAProxy with the
    example configuration. ``settings``: lines of the scaffold's atrium.yaml, each replaced."""
    project, arrivals, log = tmp_path / "project", tmp_path / "arrivals.txt", tmp_path / "out.log"
    # HAProxy's port is held from the start and handed over as a file descriptor: no other
    # test's process can take it meanwhile (and answer in HAProxy's place).
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    ports = [free_port(), free_port()]
    env = {
        **haproxy_environment(f"fd@{listener.fileno()}", ports),
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_PUBLIC_URL": url,
        "NO_COLOR": "1",
    }
    subprocess.run(
        [*atrium(project), "init", str(project)], env=env, check=True, capture_output=True
    )
    only_builtins(project, set())
    _add_slow_server(project, arrivals)
    _edit(project / "atrium.yaml", settings or {})
    sync = ["cloud", "sync", "local", "mcp", "--direction", "to-db", "-y"]
    subprocess.run([*atrium(project), *sync], env=env, check=True, capture_output=True)
    haproxy_log = tmp_path / "haproxy.log"
    with ExitStack() as stack:
        stack.callback(listener.close)
        services = [*atrium(project), "infra", "services", "start", "mcp"]
        stack.enter_context(started(services, env, log))
        replicas = [
            stack.enter_context(
                started(
                    [*atrium(project), "gateway"], {**env, "ATRIUM_GATEWAY_PORT": str(port)}, log
                )
            )
            for port in ports
        ]
        for port in ports:
            wait_until(
                lambda port=port: routed(f"http://127.0.0.1:{port}", "slow"),  # type: ignore[misc]
                timeout_s=60,
                what=f"the replica on {port} routing the slow server",
                detail=lambda: tail(log),
            )
        argv = [haproxy(), "-db", "-f", str(HAPROXY_CONFIG)]
        balancer = stack.enter_context(
            started(argv, env, haproxy_log, pass_fds=(listener.fileno(),))
        )
        listener.close()  # HAProxy has its own: if it dies, connections are refused
        # Each replica at full health: from there one failed check does not take it out
        # (HAProxy starts a server at the lowest health that is still up).
        wait_until(
            lambda: all(fully_healthy(haproxy_log, name) for name in REPLICAS),
            timeout_s=30,
            what="HAProxy counting both replicas fully healthy",
            detail=lambda: tail(haproxy_log),
        )
        assert balancer.poll() is None, tail(haproxy_log)
        assert healthy(url), tail(haproxy_log)
        yield Cluster(project, url, replicas, arrivals, haproxy_log, env)


def fully_healthy(log: Path, server: str) -> bool:
    """Whether HAProxy has logged ``server`` at full health (``option log-health-checks``): up,
    with as many failed checks to go before it is down as ``fall`` says ("status: 2/2 UP")."""
    text = log.read_text() if log.exists() else ""
    line = rf"Health check for server gateways/{server} succeeded.*status: (\d+)/\1 UP"
    return re.search(line, text) is not None


def _edit(path: Path, replacements: Mapping[str, str]) -> None:
    text = path.read_text()
    for old, new in replacements.items():
        assert old in text, f"{path.name} has no line {old!r} any more"
        text = text.replace(old, new)
    path.write_text(text)


def _add_slow_server(project: Path, arrivals: Path) -> None:
    command = [sys.executable, str(SLOW), "--port", "{port}", "--project", "{project}"]
    command += ["--arrivals", str(arrivals)]
    (project / "services/mcp/slow.yaml").write_text(
        "mcp_servers:\n  slow:\n    transport: http\n"
        f"    command: {json.dumps(command)}\n    port: {free_port()}\n"
        "    oauth: {required: true, audience: mcp}\n"
    )


def call_wait(url: str, token: str, label: str, seconds: float) -> httpx2.Response:
    """``wait`` as a one-shot JSON-RPC call through HAProxy, by a client that sends it once."""
    body = {
        "jsonrpc": "2.0",
        "id": label,
        "method": "tools/call",
        "params": {"name": "wait", "arguments": {"seconds": seconds, "label": label}},
    }
    headers = {**ONE_SHOT, "Authorization": f"Bearer {token}"}
    return httpx2.post(f"{url}/api/v1/mcp/slow/mcp", json=body, headers=headers, timeout=60)


def answered(response: httpx2.Response, label: str) -> bool:
    if response.status_code != 200:
        return False
    result = response.json().get("result") or {}
    return not result.get("isError") and label in json.dumps(result)


def test_a_killed_replica_costs_only_the_calls_that_had_reached_it_and_none_is_sent_twice(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as running:
        token = running.token("slow")
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            slow_labels = [f"slow-{n}" for n in range(IN_FLIGHT)]
            slow: dict[str, Future[httpx2.Response]] = {
                label: pool.submit(call_wait, running.url, token, label, 5.0)
                for label in slow_labels
            }
            wait_until(
                lambda: len(running.arrived()) == IN_FLIGHT,
                timeout_s=30,
                what="the slow calls running on the backend",
                detail=lambda: tail(running.haproxy_log),
            )
            killed = running.replicas[1]
            killed.kill()
            killed.wait(10)

            # Sent after the kill: none reached the dead replica, so none may fail, though
            # HAProxy still sends every other one there until its health checks notice.
            after = [f"after-{n}" for n in range(AFTER_KILL)]
            late = {label: call_wait(running.url, token, label, 0) for label in after}
            slow_answers = {label: future.result() for label, future in slow.items()}

    failed_after = {label: r.status_code for label, r in late.items() if not answered(r, label)}
    assert not failed_after, failed_after
    survived = [label for label in slow_labels if answered(slow_answers[label], label)]
    lost = [label for label in slow_labels if label not in survived]
    # The slow calls were spread over both replicas: those on the survivor were answered, and
    # those on the killed one failed (they had reached it; nothing can answer them now).
    assert survived, {label: r.text for label, r in slow_answers.items()}
    assert lost, {label: r.status_code for label, r in slow_answers.items()}
    assert {slow_answers[label].status_code for label in lost} == {502}
    # No call ran twice: HAProxy resent none that had reached a replica.
    arrived = running.arrived()
    assert sorted(arrived) == sorted(slow_labels + after), arrived
    # The dead replica was still in rotation for some of the calls after the kill: those were
    # redispatched to the other one ("+" before the retry count in HAProxy's log line).
    log = running.haproxy_log.read_text()
    assert re.search(r" gateways/replica1 .* \d+/\d+/\d+/\d+/\+\d+ ", log), log[-3000:]


@pytest.mark.redis
def test_a_client_cannot_choose_the_address_its_registrations_count_against(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    # Scaled out: both replicas count registrations in Redis, per client address, and believe
    # X-Forwarded-For from HAProxy (on this host) only.
    settings = {
        "  # trusted_proxies: [10.0.0.5]": "  trusted_proxies: [127.0.0.1]",
        "  # registrations_per_address: 20/hour": "  registrations_per_address: 2/hour",
        "  # url: redis://127.0.0.1:6379/0": f"  url: {redis_url}\n  key_prefix: {redis_prefix}",
    }
    register = {
        "redirect_uris": ["http://127.0.0.1:4999/callback"],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
    }
    with cluster(tmp_path, settings) as running:
        statuses = [
            httpx2.post(
                f"{running.url}/api/v1/core/oauth/register",
                json=register,
                headers={"X-Forwarded-For": f"203.0.113.{n}"},  # a new address each time
                timeout=30,
            ).status_code
            for n in range(6)
        ]

    # All six count against HAProxy's address: refused from the third on where the replicas
    # share their counts in Redis, from the fifth on where each counts alone (round robin).
    # Had a forged address been believed, none would be.
    assert statuses[:2] == [201, 201], statuses
    assert statuses[-2:] == [429, 429], statuses
