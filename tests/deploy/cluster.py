"""What the deployment tests share: the repository's deploy/ folder, HAProxy, and processes
started for real (``atrium gateway`` replicas, a backend supervisor, HAProxy) that a test may
also kill; ``cluster`` starts them together, as an operator scaling out would."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.cli.helpers import run_atrium_blocking
from tests.polling import wait_until
from tests.processes import free_port, only_builtins

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HAPROXY_CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"
SLOW = Path(__file__).with_name("slow_server.py")
ONE_SHOT = {"Content-Type": "application/json"}
REPLICAS = ("replica1", "replica2")  # the `server` names of deploy/haproxy/haproxy.cfg


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def haproxy() -> str:
    """Debian's ``haproxy`` (scripts/system-deps): required in CI, skipped without it elsewhere."""
    found = shutil.which("haproxy")
    if found is None:
        message = "needs Debian's haproxy (scripts/system-deps installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


def haproxy_environment(listen: str, replicas: list[int]) -> dict[str, str]:
    """What deploy/haproxy/haproxy.cfg reads: where to listen (an address, or ``fd@N``), where
    the replicas are."""
    env = {**os.environ, "ATRIUM_LISTEN": listen}
    for index, port in enumerate(replicas, start=1):
        env[f"ATRIUM_REPLICA_{index}"] = f"127.0.0.1:{port}"
    return env


def atrium(project: Path) -> list[str]:
    return [sys.executable, "-m", "atrium", "--project", str(project)]


@contextmanager
def started(
    argv: list[str], env: dict[str, str], log: Path, pass_fds: tuple[int, ...] = ()
) -> Iterator[subprocess.Popen[str]]:
    """A process until the block ends; then SIGTERM, and SIGKILL if it is still there after
    30 s. A process the test killed itself is only reaped."""
    with log.open("a") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, pass_fds=pass_fds
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def healthy(base: str) -> bool:
    try:
        return httpx2.get(f"{base}/health", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def routed(base: str, server: str) -> bool:
    """Whether the gateway at ``base`` routes ``server`` and finds its backend running."""
    try:
        answer = httpx2.get(f"{base}/api/v1/mcp/registry/{server}", timeout=2)
        return bool(answer.status_code == 200 and answer.json().get("status") == "running")
    except (httpx2.HTTPError, ValueError):
        return False


def tail(*logs: Path) -> str:
    """The end of each log, for the message of a failed wait."""
    return "\n".join(f"--- {log.name}\n{log.read_text()[-1500:]}" for log in logs if log.exists())


@dataclass(frozen=True)
class Cluster:
    """Two gateway replicas of one project (one store, one backend supervisor) behind HAProxy."""

    project: Path
    url: str  # HAProxy's
    ports: list[int]  # the replicas', in the order of ``REPLICAS``
    replicas: list[subprocess.Popen[str]]  # the running (or last killed) process of each
    arrivals: Path  # the labels of the calls the slow server received, in order
    haproxy_log: Path
    log: Path  # the replicas' and the supervisor's output
    env: dict[str, str]
    stack: ExitStack  # what ends with the cluster, replicas started again included
    password: str  # the first administrator's, as `atrium init` printed it

    def base(self, index: int) -> str:
        """The URL of replica ``index`` itself, not through HAProxy."""
        return f"http://127.0.0.1:{self.ports[index]}"

    def atrium(self, *args: str) -> str:
        """What ``atrium --project <project> args`` prints; it must succeed. Run in this
        process (``run_atrium_blocking``): a command that only reads or writes the store
        needs no interpreter of its own, whose imports cost about a second."""
        done = run_atrium_blocking("--project", str(self.project), *args, env=self.env)
        assert done.exit_code == 0, done.stdout + done.stderr
        return done.stdout

    def token(self, server: str) -> str:
        issued = self.atrium("admin", "token", "issue", "--user", "admin", "--server", server)
        return issued.strip().splitlines()[-1]

    def arrived(self) -> list[str]:
        return self.arrivals.read_text().split() if self.arrivals.exists() else []

    def restart(self, index: int) -> None:
        """Start replica ``index`` again (after a test killed it), until HAProxy counts it
        fully healthy again."""
        assert self.replicas[index].poll() is not None, "the replica is still running"
        seen = len(self.haproxy_log.read_text())
        self.replicas[index] = self.stack.enter_context(
            started(*_replica(self.project, self.env, self.ports[index], index), self.log)
        )
        wait_until(
            lambda: fully_healthy(self.haproxy_log, REPLICAS[index], since=seen),
            timeout_s=60,
            what=f"HAProxy counting {REPLICAS[index]} fully healthy again",
            detail=lambda: tail(self.log, self.haproxy_log),
        )


def _replica(
    project: Path, env: Mapping[str, str], port: int, index: int
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of replica ``index``: its own port and replica id."""
    own = {"ATRIUM_GATEWAY_PORT": str(port), "ATRIUM_REPLICA_ID": REPLICAS[index]}
    return [*atrium(project), "gateway"], {**env, **own}


@contextmanager
def cluster(
    tmp_path: Path,
    settings: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """``atrium init``, a slow server of the user's, ``cloud sync`` to the store, the backends
    under ``infra services start mcp``, two ``atrium gateway`` replicas, HAProxy with the
    example configuration. ``settings``: lines of the scaffold's atrium.yaml, each replaced;
    ``environ``: more variables for every process (the store's URL, the master key)."""
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
        **(environ or {}),
    }
    # ``init`` and ``cloud sync`` only write files and the store: run in this process.
    init = run_atrium_blocking("--project", str(project), "init", str(project), env=env)
    assert init.exit_code == 0, init.stdout + init.stderr
    password = re.search(r"password \(shown once\): (\S+)", init.stdout)
    assert password, init.stdout
    only_builtins(project, set())
    add_slow_server(project, arrivals)
    edit(project / "atrium.yaml", settings or {})
    sync = ["cloud", "sync", "local", "mcp", "--direction", "to-db", "-y"]
    synced = run_atrium_blocking("--project", str(project), *sync, env=env)
    assert synced.exit_code == 0, synced.stdout + synced.stderr
    haproxy_log = tmp_path / "haproxy.log"
    with ExitStack() as stack:
        stack.callback(listener.close)
        services = [*atrium(project), "infra", "services", "start", "mcp"]
        stack.enter_context(started(services, env, log))
        replicas = [
            stack.enter_context(started(*_replica(project, env, port, index), log))
            for index, port in enumerate(ports)
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
        yield Cluster(
            project, url, ports, replicas, arrivals, haproxy_log, log, env, stack, password[1]
        )


def fully_healthy(log: Path, server: str, since: int = 0) -> bool:
    """Whether HAProxy has logged ``server`` at full health (``option log-health-checks``): up,
    with as many failed checks to go before it is down as ``fall`` says ("status: 2/2 UP");
    ``since``: in the log from that character on."""
    text = log.read_text()[since:] if log.exists() else ""
    line = rf"Health check for server gateways/{server} succeeded.*status: (\d+)/\1 UP"
    return re.search(line, text) is not None


def edit(path: Path, replacements: Mapping[str, str]) -> None:
    """Replace lines of a file ``atrium init`` wrote; each must still be there."""
    text = path.read_text()
    for old, new in replacements.items():
        assert old in text, f"{path.name} has no line {old!r} any more"
        text = text.replace(old, new)
    path.write_text(text)


def add_slow_server(project: Path, arrivals: Path) -> None:
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
