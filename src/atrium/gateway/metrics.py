"""``GET /metrics``: the gateway's counters in the Prometheus text exposition format (0.0.4).

Counted from the audit records as ``AuditSink`` records them, so the metrics and the audit
trail count the same requests by the same rules; backend restarts are read from the
supervisor's state file at scrape time. Each ``Metrics`` has a registry of its own, never the
process-wide default one: an app is a value (tests build dozens), not a global.

Scaled out, several replicas answer ``/metrics`` behind one address, and a sum over them must
count each request once. So every series carries a ``replica`` label (``gateway.replica_id``,
else ``<hostname>:<pid>``: stable for the life of the process, unique on one host), and a
replica counts only what it served. Backend restarts are the supervisor's facts, not any
replica's: only the gateway that runs in the supervisor's own process (``atrium start``) reports
them; a replica beside it (``atrium gateway``), which reads the same state file, reports none.
A gateway of several workers (``gateway.workers``) counts each worker under a label of its own,
and any worker's ``/metrics`` answers for all of them (``atrium.gateway.worker_metrics``).

Label values are bounded, because they come from requests: otherwise anyone could add a time
series per name they make up. An unknown server is ``(unknown)``, a method that is not MCP's
is ``(other)``. A tool name becomes a label only once its backend listed it in a ``tools/list``
answer through this gateway (``ToolCatalog.knows``): a name comes from the backend, never from
the request that calls it, since a call's outcome is no proof (a backend may answer any name).
Calls of names never listed count under ``(unknown)``; and as a backend may list anything,
each server has at most ``MAX_TOOL_LABELS`` tool labels, the calls of later ones under
``(other)``. A label, once given, stays for the life of the process (counters never vanish).

The endpoint is open, like ``/health``. It holds counts by server and tool name, never
arguments, callers or clients; the gateway listens on loopback unless told otherwise; and a
scraper cannot follow an OAuth flow whose tokens are each bound to one MCP server's audience.
Where the gateway is exposed, keep ``/metrics`` off the public route at the proxy.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from atrium.runstate import read_state
from atrium.store.audit import AuditEvent

# From a cached ping (1 ms) to the default tool timeout (60 s).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# The request methods of both protocol eras (2024-11-05 … 2026-07-28).
MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "subscriptions/listen",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "tasks/get",
        "tasks/list",
        "tasks/result",
        "tasks/cancel",
    }
)
UNKNOWN_SERVER = "(unknown)"
UNKNOWN_TOOL = "(unknown)"
OTHER = "(other)"
MAX_TOOL_LABELS = 200  # per server; GitHub's MCP server, among the largest, lists ~100 tools
NO_METHOD = "(none)"  # refused before its body was read, or a GET or DELETE: no JSON-RPC
AUTH_REFUSALS = frozenset({401, 403})
RATE_LIMITED = 429


class Metrics:
    def __init__(
        self,
        known_server: Callable[[str], bool],
        state_dir: Path | None = None,
        *,
        known_tool: Callable[[str, str], bool] = lambda server, tool: False,
        replica: str | None = None,
    ) -> None:
        """``known_server`` tells a registered server's name (a label) from any other path;
        ``state_dir`` is where a supervisor on this host keeps its state, if one may;
        ``known_tool`` whether a server listed a tool (``ToolCatalog.knows``); ``replica``
        the ``replica`` label (``default_replica``)."""
        self.registry = CollectorRegistry()
        self.replica = replica or default_replica()
        self._known_server = known_server
        self._known_tool = known_tool
        self._requests = self._counter(
            "atrium_gateway_requests",
            "JSON-RPC requests through the gateway, by outcome and origin (external, in-app).",
            ("server", "method", "outcome", "origin"),
        )
        self._tool_calls = self._counter(
            "atrium_tool_calls",
            "tools/call requests; tool is (unknown) for a name the server never listed.",
            ("server", "tool", "outcome", "origin"),
        )
        self._duration = Histogram(
            "atrium_request_duration_seconds",
            "Time from the request's arrival to its answer's end, streams included.",
            ("server", "method", "replica"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._rate_limited = self._counter(
            "atrium_rate_limited", "Requests refused for their rate limit (HTTP 429).", ("server",)
        )
        self._refusals = self._counter(
            "atrium_auth_refusals",
            "Requests refused for their credentials (401) or their rights or Origin (403).",
            ("server", "status"),
        )
        if state_dir is not None:
            self.registry.register(BackendRestarts(state_dir, self.replica))
        self._children: dict[tuple[str, str, str, str, str, int], _Children] = {}
        self._tool_labels: dict[str, set[str]] = {}  # per server, the tools that are labels

    def _counter(self, name: str, documentation: str, labels: tuple[str, ...]) -> Counter:
        return Counter(name, documentation, (*labels, "replica"), registry=self.registry)

    def observe(self, event: AuditEvent) -> None:
        """Count one audited request (an ``AuditSink`` listener, on the request's hot path)."""
        key = self._labels(event)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._bind(*key)
        for counter in children.counters:
            counter.inc()
        children.duration.observe(event.duration_ms / 1000)

    def _labels(self, event: AuditEvent) -> tuple[str, str, str, str, str, int]:
        """Bounded label values (module docstring); the cache key of their children."""
        server = event.server if self._known_server(event.server) else UNKNOWN_SERVER
        method = event.method or NO_METHOD
        if method not in MCP_METHODS and method != NO_METHOD:
            method = OTHER
        return server, method, self._tool(server, event), event.outcome, event.origin, event.status

    def _tool(self, server: str, event: AuditEvent) -> str:
        tool = event.tool
        labels = self._tool_labels.setdefault(server, set())
        if tool is None or tool in labels:
            return tool or UNKNOWN_TOOL
        if not self._known_tool(server, tool):
            return UNKNOWN_TOOL
        if len(labels) >= MAX_TOOL_LABELS:
            return OTHER
        labels.add(tool)
        return tool

    def _bind(
        self, server: str, method: str, tool: str, outcome: str, origin: str, status: int
    ) -> _Children:
        replica = self.replica
        counters = [self._requests.labels(server, method, outcome, origin, replica)]
        if method == "tools/call":
            counters.append(self._tool_calls.labels(server, tool, outcome, origin, replica))
        if status == RATE_LIMITED:
            counters.append(self._rate_limited.labels(server, replica))
        if status in AUTH_REFUSALS:
            counters.append(self._refusals.labels(server, str(status), replica))
        return _Children(tuple(counters), self._duration.labels(server, method, replica))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        return Response(self.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)


@dataclass(frozen=True)
class _Children:
    """The labelled children one kind of request increments, bound once."""

    counters: tuple[Counter, ...]
    duration: Histogram


def default_replica() -> str:
    """``<hostname>:<pid>``: what tells this gateway process from every other one."""
    return f"{socket.gethostname()}:{os.getpid()}"


class BackendRestarts:
    """A collector: each server's restart count, read from the supervisor's state at scrape
    time, by the gateway in the supervisor's own process only (module docstring). No
    supervisor running (one that died included) gives no samples: a count left behind would
    describe processes that are gone."""

    NAME = "atrium_backend_restarts"
    HELP = "Times the supervisor restarted the server's process since the supervisor started."
    LABELS = ("server", "replica")

    def __init__(self, state_dir: Path, replica: str, supervisor: int | None = None) -> None:
        """``supervisor``: the pid whose supervisor's counts are this gateway's to report; this
        process unless told (a worker of ``gateway.workers`` reports its parent's)."""
        self._state_dir = state_dir
        self._replica = replica
        self._supervisor = supervisor

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=self.LABELS)

    def collect(self) -> Iterator[Metric]:
        state = read_state(self._state_dir)
        supervisor = os.getpid() if self._supervisor is None else self._supervisor
        if state is None or state.supervisor_pid != supervisor:
            return
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=self.LABELS)
        for name, status in sorted(state.servers.items()):
            family.add_metric((name, self._replica), status.restarts)
        yield family
