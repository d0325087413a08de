"""Two hosts for real (issue 18): each its own folder and its own ``atrium init``, one
PostgreSQL store, one master key. The first runs ``atrium gateway``, the second ``atrium infra
services start mcp``: the second host's backends accept the first host's gateway, through a
caller-key rotation made with ``atrium admin keys rotate --caller`` on the first host; and a
host given another master key stops with a clear error, not a traceback."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx2
import pytest

from atrium.auth.assertion import PUBLIC_FILE
from atrium.secretbox import new_key
from tests.cli.helpers import CliResult, run_atrium
from tests.conftest import POSTGRES_URL
from tests.e2e.test_gateway_alone import ONE_SHOT, TOOLS_LIST, healthy, running
from tests.polling import wait_until
from tests.processes import free_port, free_server_ports, only_builtins

pytestmark = pytest.mark.postgres


def atrium(folder: Path) -> list[str]:
    return [sys.executable, "-m", "atrium", "--project", str(folder)]


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def cli(folder: Path, *args: str, env: dict[str, str]) -> CliResult:
    """``atrium ARGS`` of a host, in this process: ``init`` and ``admin`` only write files
    and the store, and a subprocess would cost the CLI's imports, about a second, each time."""
    return run_atrium("--project", str(folder), *args, env=env)


def server_port(folder: Path, name: str) -> int:
    text = (folder / "services" / "mcp" / f"{name}.yaml").read_text()
    return int(re.search(r"port: (\d+)", text)[1])  # type: ignore[index]


def known(base: str, server: str) -> bool:
    """The gateway routes ``server`` (its status is the supervisor's, on another host)."""
    try:
        return httpx2.get(f"{base}/api/v1/mcp/registry/{server}", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def tools_list(base: str, token: str) -> httpx2.Response:
    return httpx2.post(
        f"{base}/api/v1/mcp/atrium/mcp",
        json=TOOLS_LIST,
        headers={**ONE_SHOT, "Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_second_hosts_backends_accept_the_first_hosts_gateway_through_a_rotation(
    tmp_path: Path, postgres_schema_prefix: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ATRIUM_DATABASE_URL": POSTGRES_URL,
        "ATRIUM_DATABASE_SCHEMA": f"{postgres_schema_prefix}_{uuid.uuid4().hex[:8]}",
        "ATRIUM_SECRET_KEY": base64.b64encode(new_key()).decode(),
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_PUBLIC_URL": base,
        "NO_COLOR": "1",
    }
    first, second = tmp_path / "host-a", tmp_path / "host-b"
    for folder in (first, second):
        done = cli(folder, "init", str(folder), env=env)
        assert done.exit_code == 0, done.stderr
    free_server_ports(first)
    only_builtins(first, {"atrium"})
    shutil.rmtree(second / "services" / "mcp")  # the same services/mcp/ on every host
    shutil.copytree(first / "services" / "mcp", second / "services" / "mcp")
    own = (second / ".atrium" / PUBLIC_FILE).read_text()
    log = tmp_path / "out.log"

    backend = f"http://127.0.0.1:{server_port(first, 'atrium')}"

    with ExitStack() as stack:
        servers = [*atrium(second), "infra", "services", "start", "mcp"]
        stack.enter_context(running(servers, env, log))
        gateway = [*atrium(first), "gateway", "--sync"]
        stack.enter_context(running(gateway, {**env, "ATRIUM_GATEWAY_PORT": str(port)}, log))
        for url, what in ((base, "the first host's gateway"), (backend, "the second's backend")):
            wait_until(
                lambda url=url: healthy(url),  # type: ignore[misc]
                timeout_s=90,
                what=what,
                detail=lambda: log.read_text()[-2000:],
            )
        wait_until(lambda: known(base, "atrium"), timeout_s=30, what="atrium in the registry")
        issue = ["admin", "token", "issue", "--user", "admin", "--server", "atrium"]
        issued = cli(first, *issue, env=env)
        assert issued.exit_code == 0, issued.stderr
        token = issued.stdout.strip().splitlines()[-1]
        before = tools_list(base, token)
        rotate = ["admin", "keys", "rotate", "--caller", "--signs-after", "3"]
        rotated = cli(first, *rotate, env=env)
        assert rotated.exit_code == 0, rotated.stderr
        new = rotated.stdout.split()[3].rstrip(":")
        answers = []
        deadline = time.monotonic() + 6  # past --signs-after: the new key signs by then
        while time.monotonic() < deadline:
            answers.append(tools_list(base, token).status_code)
            time.sleep(0.2)
        listed = cli(first, "admin", "keys", "list", "--caller", env=env)

    assert before.status_code == 200, before.text
    assert "list_playbooks" in {tool["name"] for tool in before.json()["result"]["tools"]}
    assert (second / ".atrium" / PUBLIC_FILE).read_text() != own  # the store's keys, not its own
    assert set(answers) == {200}, answers
    assert f"{new}  signs" in listed.stdout, listed.stdout


def test_a_host_with_another_master_key_stops_with_a_clear_error(
    tmp_path: Path, postgres_schema_prefix: str
) -> None:
    env = {
        **os.environ,
        "ATRIUM_DATABASE_URL": POSTGRES_URL,
        "ATRIUM_DATABASE_SCHEMA": f"{postgres_schema_prefix}_{uuid.uuid4().hex[:8]}",
        "ATRIUM_PORT_RANGE": "1024-65535",
        "NO_COLOR": "1",
    }
    first, second = tmp_path / "host-a", tmp_path / "host-b"
    masters = [base64.b64encode(new_key()).decode() for _ in range(2)]
    for folder, master in zip((first, second), masters, strict=True):
        initialized = cli(folder, "init", str(folder), env={**env, "ATRIUM_SECRET_KEY": master})
        assert initialized.exit_code == 0, initialized.stderr
        only_builtins(folder, set())
    stored = cli(
        first, "admin", "keys", "rotate", "--caller", env={**env, "ATRIUM_SECRET_KEY": masters[0]}
    )
    assert stored.exit_code == 0, stored.stderr

    done = run(
        [*atrium(second), "infra", "services", "start", "mcp"],
        {**env, "ATRIUM_SECRET_KEY": masters[1]},
    )

    assert done.returncode != 0
    assert "same master key" in done.stderr, done.stderr
    assert "ATRIUM_SECRET_KEY" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
