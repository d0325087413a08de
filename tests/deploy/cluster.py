"""What the deployment tests share: the repository's deploy/ folder, HAProxy, and processes
started for real (``atrium gateway`` replicas, a backend supervisor, HAProxy) that a test may
also kill."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HAPROXY_CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"


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
