"""deploy/haproxy/haproxy.cfg: a valid configuration, and, run for real on loopback in front of
two ``atrium gateway`` replicas, round robin over both, forwarded headers a client cannot forge,
and a replica killed under calls in flight costing only the calls that had reached it, none of
them sent twice."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from tests.deploy.cluster import (
    HAPROXY_CONFIG,
    answered,
    call_wait,
    cluster,
    haproxy,
    haproxy_environment,
    tail,
)
from tests.polling import wait_until
from tests.processes import free_port

IN_FLIGHT = 4  # slow calls running when a replica is killed: round robin gives each replica two
AFTER_KILL = 20  # calls sent once it is dead, while HAProxy still counts it as up


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
