"""Gateways apart from the backends: ``atrium gateway`` replicas, ``atrium infra services start
mcp`` for the servers, and the ASGI factory for any ASGI server (issue 18: scale-out)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx2

from tests.cli.helpers import run_atrium
from tests.polling import wait_until
from tests.processes import free_port, free_server_ports, only_builtins

ONE_SHOT = {"Content-Type": "application/json"}
TOOLS_LIST = {"jsonrpc": "2.0", "method": "tools/list", "id": 1}


@contextmanager
def running(
    argv: list[str], env: dict[str, str], log: Path, exits: tuple[int, ...] = (0,)
) -> Iterator[subprocess.Popen[str]]:
    """A process until the block ends, then SIGTERM; it must stop by itself, with one of
    ``exits`` (uvicorn ends a graceful shutdown by re-raising the signal: -15)."""
    with log.open("a") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(30) in exits, log.read_text()[-2000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def init(project: Path, env: dict[str, str]) -> None:
    """``atrium init``, in this process: it only writes files and the store, and a subprocess
    would cost the CLI's imports, about a second. What is served runs in subprocesses."""
    done = run_atrium("--project", str(project), "init", str(project), env=env)
    assert done.exit_code == 0, done.stderr


def healthy(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/health", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def routed(url: str, server: str) -> bool:
    try:
        answer = httpx2.get(f"{url}/api/v1/mcp/registry/{server}", timeout=2)
        return bool(answer.status_code == 200 and answer.json().get("status") == "running")
    except (httpx2.HTTPError, ValueError):
        return False


def test_two_gateway_replicas_route_backends_run_apart_and_take_the_same_tokens(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    ports = free_port(), free_port()
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_PUBLIC_URL": bases[0],  # behind a load balancer: one public URL for both
        "NO_COLOR": "1",
    }
    atrium = [sys.executable, "-m", "atrium", "--project", str(project)]
    init(project, env)
    free_server_ports(project)
    only_builtins(project, {"atrium"})
    log = tmp_path / "out.log"

    with ExitStack() as stack:
        stack.enter_context(running([*atrium, "infra", "services", "start", "mcp"], env, log))
        for index, port in enumerate(ports):
            # The first one brings the store in line with the YAML; the second routes from it.
            argv = [*atrium, "gateway", *(["--sync"] if index == 0 else [])]
            stack.enter_context(running(argv, {**env, "ATRIUM_GATEWAY_PORT": str(port)}, log))
        for base in bases:
            wait_until(
                lambda base=base: routed(base, "atrium"),  # type: ignore[misc]
                timeout_s=60,
                what=f"atrium routed by {base}",
                detail=lambda: log.read_text()[-2000:],
            )
        issue = ("admin", "token", "issue", "--user", "admin", "--server", "atrium")
        issued = run_atrium("--project", str(project), *issue, env=env)
        assert issued.exit_code == 0, issued.stderr
        token = issued.stdout.strip().splitlines()[-1]
        for base in bases:
            answer = httpx2.post(
                f"{base}/api/v1/mcp/atrium/mcp",
                json=TOOLS_LIST,
                headers={**ONE_SHOT, "Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            names = {tool["name"] for tool in answer.json()["result"]["tools"]}
            assert "list_playbooks" in names
            refused = httpx2.post(f"{base}/api/v1/mcp/atrium/mcp", json=TOOLS_LIST, timeout=30)
            assert refused.status_code == 401  # each replica checks tokens by itself

    assert "Stopped." in log.read_text()


def test_the_asgi_factory_serves_a_project_named_by_the_environment(tmp_path: Path) -> None:
    project = tmp_path / "project"
    env = {**os.environ, "ATRIUM_PORT_RANGE": "1024-65535", "NO_COLOR": "1"}
    init(project, env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "--port", str(port)]
    argv = [*uvicorn, "atrium.gateway.asgi:app_from_environment"]
    served = {**env, "ATRIUM_PROJECT": str(project), "ATRIUM_PUBLIC_URL": base}
    with running(argv, served, tmp_path / "uvicorn.log", exits=(0, -signal.SIGTERM)):
        wait_until(lambda: healthy(base), timeout_s=60, what="the gateway under uvicorn")
        card = httpx2.get(f"{base}/.well-known/oauth-authorization-server", timeout=10)
        assert card.json()["issuer"] == base


def test_the_asgi_factory_says_what_is_wrong_with_the_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "atrium.yaml").write_text("gateway: [not, a, mapping]\n")
    env = {**os.environ, "ATRIUM_PROJECT": str(project), "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "--port", str(free_port())]
    done = subprocess.run(
        [*argv, "atrium.gateway.asgi:app_from_environment"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "atrium:" in done.stderr
    assert "atrium.yaml" in done.stderr
    assert "Traceback" not in done.stderr
