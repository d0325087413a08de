"""``GET /metrics``: the gateway's counters in the Prometheus text format, read as scrapers do."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from atrium.auth.operator import OPERATOR_CLIENT_ID
from atrium.errors import ConfigError
from atrium.gateway.metrics import Metrics, default_replica
from atrium.runstate import (
    RuntimeState,
    ServerStatus,
    SupervisorLock,
    run_dir,
    write_state,
)
from atrium.settings import Settings, load_settings
from atrium.store import Store
from atrium.store.audit import AuditEvent
from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    Gateway,
    call_body,
    call_modern,
    list_body,
    modern_headers,
    running_gateway,
    save_servers,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(http: httpx2.AsyncClient, gateway: Gateway) -> Samples:
    response = await http.get(f"{gateway.base}/metrics")
    assert response.status_code == 200
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels, and the ``replica`` label of this process's
    gateways (unless ``labels`` names another)."""
    return samples.get((name, frozenset({"replica": default_replica(), **labels}.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` that has these labels (and maybe others)."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def label_values(samples: Samples, label: str) -> set[str]:
    return {value for _, labels in samples for name, value in labels if name == label}


async def list_tools(http: httpx2.AsyncClient, gateway: Gateway, server: str) -> None:
    """A ``tools/list`` through the gateway: how it learns which tool names are labels."""
    body = list_body()
    response = await http.post(
        gateway.url(server), content=body, headers=modern_headers("tools/list")
    )
    assert response.status_code == 200


async def test_metrics_are_served_in_the_prometheus_text_format(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await http.get(f"{gateway.base}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE atrium_tool_calls_total counter" in response.text


async def test_tool_calls_are_counted_by_server_tool_outcome_and_origin(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    await list_tools(http, gateway, "tools")
    await call_modern(http, gateway.url("tools"), "echo", {"text": "one"})
    await call_modern(http, gateway.url("tools"), "echo", {"text": "two"})
    await call_modern(http, gateway.url("tools"), "echo", {"wrong": "argument"})
    denied = await call_modern(http, gateway.url("guarded"), "delete_everything")
    await gateway.audit_of("tools", 4)
    await gateway.audit_of("guarded", 1)

    samples = await scrape(http, gateway)

    calls = "atrium_tool_calls_total"
    external = {"origin": "external"}
    assert denied.status_code == 400
    assert value(samples, calls, server="tools", tool="echo", outcome="ok", **external) == 2
    assert value(samples, calls, server="tools", tool="echo", outcome="tool_error", **external) == 1
    assert (
        value(
            samples, calls, server="guarded", tool="(unknown)", outcome="jsonrpc_error", **external
        )
        == 1
    )
    requests = "atrium_gateway_requests_total"
    labels = {"server": "tools", "method": "tools/call", "origin": "external"}
    assert value(samples, requests, outcome="ok", **labels) == 2
    assert value(samples, requests, outcome="tool_error", **labels) == 1


async def test_tool_names_the_server_never_listed_are_not_labels(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    # The SDK answers an unknown tool as it answers a failing one: with a tool error; and a
    # tool that exists is no label either until the server listed it through the gateway.
    for name in ("made_up_1", "made_up_2", "fail", "echo"):
        await call_modern(http, gateway.url("tools"), name, {"text": "hi"})
    await gateway.audit_of("tools", 4)

    samples = await scrape(http, gateway)

    assert not {"made_up_1", "made_up_2", "fail", "echo"} & label_values(samples, "tool")
    calls = "atrium_tool_calls_total"
    assert total(samples, calls, tool="(unknown)", outcome="tool_error") == 3
    assert total(samples, calls, tool="(unknown)", outcome="ok") == 1


async def test_unknown_servers_and_methods_share_one_label_each(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    await call_modern(http, gateway.url("nobody-here-42"), "echo", {"text": "hi"})
    made_up = b'{"jsonrpc": "2.0", "id": 1, "method": "x/made-up", "params": {}}'
    await http.post(gateway.url("tools"), content=made_up, headers=modern_headers("x/made-up"))
    await gateway.audit_of("nobody-here-42", 1)
    await gateway.audit_of("tools", 1)

    samples = await scrape(http, gateway)

    assert "nobody-here-42" not in label_values(samples, "server")
    assert "x/made-up" not in label_values(samples, "method")
    requests = "atrium_gateway_requests_total"
    assert total(samples, requests, server="(unknown)") == 1
    assert total(samples, requests, server="tools", method="(other)") == 1


async def test_request_durations_fill_the_histogram(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    await call_modern(http, gateway.url("tools"), "echo", {"text": "one"})
    await call_modern(http, gateway.url("tools"), "slow", {"seconds": 0.3})
    await gateway.audit_of("tools", 2)

    samples = await scrape(http, gateway)

    labels = {"server": "tools", "method": "tools/call"}
    histogram = "atrium_request_duration_seconds"
    assert value(samples, f"{histogram}_count", **labels) == 2
    assert value(samples, f"{histogram}_bucket", le="0.25", **labels) == 1
    assert value(samples, f"{histogram}_bucket", le="60.0", **labels) == 2
    assert 0.3 < (value(samples, f"{histogram}_sum", **labels) or 0) < 60


async def test_calls_of_atriums_own_cli_are_in_app_and_recorded_so(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    await list_tools(http, gateway, "tools")
    token = gateway.token("tools", "admin", subject="operator:ann", client_id=OPERATOR_CLIENT_ID)
    headers = {**modern_headers("tools/call", "echo"), "Authorization": f"Bearer {token}"}
    body = call_body("echo", {"text": "from the CLI"})
    response = await http.post(gateway.url("tools"), content=body, headers=headers)
    await call_modern(http, gateway.url("tools"), "echo", {"text": "from outside"})
    (record,) = await gateway.audit(response.headers["x-request-id"])
    await gateway.audit_of("tools", 3)

    samples = await scrape(http, gateway)

    assert record.origin == "in-app"
    labels = {"server": "tools", "tool": "echo", "outcome": "ok"}
    assert value(samples, "atrium_tool_calls_total", origin="in-app", **labels) == 1
    assert value(samples, "atrium_tool_calls_total", origin="external", **labels) == 1


async def test_authentication_refusals_are_counted_by_status(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server("locked", port=backend.port, oauth={"required": True})
    refused = await call_modern(http, gateway.url("locked"), "echo")
    await gateway.audit_of("locked", 1)

    samples = await scrape(http, gateway)

    assert refused.status_code == 401
    assert value(samples, "atrium_auth_refusals_total", server="locked", status="401") == 1
    assert value(samples, "atrium_auth_refusals_total", server="tools", status="401") is None


async def test_calls_past_the_rate_limit_are_counted_as_rate_limited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server("throttled", port=backend.port, rate_limit="1/minute")
    statuses = [
        (await call_modern(http, gateway.url("throttled"), "echo", {"text": "hi"})).status_code
        for _ in range(3)
    ]
    await gateway.audit_of("throttled", 3)

    samples = await scrape(http, gateway)

    assert statuses == [200, 429, 429]
    assert value(samples, "atrium_rate_limited_total", server="throttled") == 2
    assert value(samples, "atrium_rate_limited_total", server="tools") is None


async def test_backend_restarts_are_read_from_a_running_supervisors_state(
    gateway: Gateway, settings: Settings, http: httpx2.AsyncClient
) -> None:
    assert "atrium_backend_restarts" not in names(await scrape(http, gateway))
    run_dir(settings.state_dir).mkdir(parents=True, exist_ok=True)
    lock = SupervisorLock(settings.state_dir)
    assert lock.acquire()
    try:
        servers = {
            "tools": ServerStatus("tools", "http", 5001, "running", restarts=3),
            "time": ServerStatus("time", "stdio", 5002, "backoff", restarts=0),
        }
        # The supervisor of ``atrium start``: in the gateway's own process.
        state = RuntimeState(os.getpid(), time.time(), servers, ready=True)
        write_state(settings.state_dir, state)

        samples = await scrape(http, gateway)
    finally:
        lock.release()

    assert value(samples, "atrium_backend_restarts", server="tools") == 3
    assert value(samples, "atrium_backend_restarts", server="time") == 0
    assert "atrium_backend_restarts" not in names(await scrape(http, gateway))


def test_a_state_file_without_a_supervisor_gives_no_restart_samples(tmp_path: Path) -> None:
    run_dir(tmp_path).mkdir()
    servers = {"tools": ServerStatus("tools", "http", 5001, "running", restarts=3)}
    write_state(tmp_path, RuntimeState(os.getpid(), time.time(), servers))

    samples = parse(Metrics(lambda name: True, tmp_path).exposition().decode())

    assert "atrium_backend_restarts" not in names(samples)


# -- scaled out: each replica counts what it served, restarts only where the supervisor runs --


def test_every_series_carries_the_replica_label(tmp_path: Path) -> None:
    run_dir(tmp_path).mkdir()
    lock = SupervisorLock(tmp_path)
    assert lock.acquire()
    try:
        servers = {"tools": ServerStatus("tools", "http", 5001, "running", restarts=1)}
        write_state(tmp_path, RuntimeState(os.getpid(), time.time(), servers))
        metrics = Metrics(lambda name: True, tmp_path, replica="gw-a")
        for status in (200, 401, 429):
            event = AuditEvent(request_id=f"r{status}", server="tools", method="tools/call")
            metrics.observe(dataclasses.replace(event, status=status))

        samples = parse(metrics.exposition().decode())
    finally:
        lock.release()

    assert {"atrium_backend_restarts", "atrium_auth_refusals_total"} <= names(samples)
    assert {"atrium_rate_limited_total", "atrium_tool_calls_total"} <= names(samples)
    unlabelled = [name for name, labels in samples if ("replica", "gw-a") not in labels]
    assert unlabelled == []


async def test_two_replicas_summed_count_each_request_once(
    settings: Settings, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, backend.port)
        first_settings = dataclasses.replace(settings, replica_id="gw-a")
        second_settings = dataclasses.replace(settings, replica_id="gw-b")
        async with (
            running_gateway(first_settings, store) as first,
            running_gateway(second_settings, store) as second,
        ):
            for replica, count in ((first, 3), (second, 2)):
                for n in range(count):
                    await call_modern(http, replica.url("tools"), "echo", {"text": str(n)})
            await first.audit_of("tools", 5)
            scraped = [await scrape(http, replica) for replica in (first, second)]

    calls = "atrium_tool_calls_total"
    per_replica = [total(samples, calls, server="tools") for samples in scraped]
    assert per_replica == [3, 2]
    assert label_values(scraped[0], "replica") == {"gw-a"}
    assert label_values(scraped[1], "replica") == {"gw-b"}


def test_a_replica_beside_the_supervisor_reports_none_of_its_restarts(tmp_path: Path) -> None:
    run_dir(tmp_path).mkdir()
    lock = SupervisorLock(tmp_path)
    assert lock.acquire()
    try:
        servers = {"tools": ServerStatus("tools", "http", 5001, "running", restarts=3)}
        # A supervisor running, in another process: `atrium start` beside `atrium gateway`.
        write_state(tmp_path, RuntimeState(os.getpid() + 1, time.time(), servers, ready=True))
        beside = parse(Metrics(lambda name: True, tmp_path).exposition().decode())
        write_state(tmp_path, RuntimeState(os.getpid(), time.time(), servers, ready=True))
        within = parse(Metrics(lambda name: True, tmp_path).exposition().decode())
    finally:
        lock.release()

    assert "atrium_backend_restarts" not in names(beside)
    assert value(within, "atrium_backend_restarts", server="tools") == 3


def test_the_replica_id_is_configured_or_the_host_and_process(tmp_path: Path) -> None:
    configured = load_settings(tmp_path, environ={"ATRIUM_REPLICA_ID": "gateway-7f9c"})
    (tmp_path / "atrium.yaml").write_text("gateway:\n  replica_id: eu-1 a\n")

    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path, environ={})

    assert Metrics(lambda name: True, replica=configured.replica_id).replica == "gateway-7f9c"
    assert Metrics(lambda name: True).replica == f"{os.uname().nodename}:{os.getpid()}"
    (problem,) = raised.value.problems
    assert (problem.key_path, problem.line) == ("gateway.replica_id", 2)
