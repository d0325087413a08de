"""One Atrium as a user runs it, for end-to-end tests: `atrium init`, then `atrium start` with
the gateway on a free port whose URL is the public URL (the issuer, and the resource clients
name). The first admin's password is read from what `init` printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from tests.cli.helpers import run_atrium_blocking
from tests.polling import wait_until
from tests.processes import free_port, free_server_ports, only_builtins


@dataclass
class Instance:
    project: Path
    base: str
    password: str
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """``atrium start``, until the built-in server is routed."""
        log = (self.project / "start.out").open("a")
        argv = [sys.executable, "-m", "atrium", "--project", str(self.project), "start"]
        self.process = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        log.close()
        wait_until(
            lambda: _routed(f"{self.base}/api/v1/mcp/registry/atrium"),
            timeout_s=60,
            what="atrium routed",
            detail=lambda: (self.project / "start.out").read_text()[-2000:],
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def restart(self) -> None:
        """Stop Atrium (gateway, supervisor, servers) and start it again on the same port."""
        self.stop()
        self.start()

    def wait_routed(self, server: str) -> None:
        """Until the gateway routes ``server`` and its supervisor reports it running."""
        url = f"{self.base}/api/v1/mcp/registry/{server}"
        wait_until(partial(_routed, url), timeout_s=60, what=f"{server} routed")

    def url(self, server: str) -> str:
        return f"{self.base}/api/v1/mcp/{server}/mcp"

    def atrium(self, *args: str, stdin: str | None = None) -> str:
        """``atrium ARGS`` on this project, which must succeed; its standard output.

        A command that only reads or writes the store or talks to the running Atrium runs in
        this process (the same ``main`` the shell reaches): a subprocess costs the CLI's
        imports, about a second each, and the tests run these by the dozen. Those that start
        or stop processes, or read standard input, run in a subprocess.
        """
        if stdin is None and args[: _IN_PROCESS_DEPTH.get(args[0], 0)] in _IN_PROCESS:
            done = run_atrium_blocking("--project", str(self.project), *args, env=self.env)
            assert done.exit_code == 0, done.stderr
            return done.stdout
        argv = [sys.executable, "-m", "atrium", "--project", str(self.project), *args]
        completed = subprocess.run(
            argv, env=self.env, input=stdin, capture_output=True, text=True, timeout=60
        )
        assert completed.returncode == 0, completed.stderr
        return completed.stdout


# The command groups ``Instance.atrium`` runs in this process (as ``started_instance`` runs
# ``init``): none starts a process that outlives it or reads standard input.
_IN_PROCESS = {("admin",), ("infra", "logs"), ("plugins", "mcp"), ("cloud", "sync")}
_IN_PROCESS_DEPTH = {command[0]: len(command) for command in _IN_PROCESS}


def _routed(url: str) -> bool:
    try:
        return bool(httpx2.get(url, timeout=2).json().get("status") == "running")
    except (httpx2.HTTPError, ValueError):
        return False


@contextmanager
def started_instance(
    project: Path,
    *,
    dpop: str | None = None,
    servers: dict[str, str] | None = None,
    builtins: Iterable[str] = ("atrium",),
) -> Iterator[Instance]:
    """The built-in `atrium` server keeps the scaffold's OAuth policy (``dpop`` overrides);
    ``servers`` are more ``services/mcp/<name>.yaml`` files, written after ``init``. Of the
    other built-in servers only those in ``builtins`` (or in ``servers``) run; those in
    ``builtins`` are routed before the block starts."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(port),
        "ATRIUM_PUBLIC_URL": base,
        "NO_COLOR": "1",
    }
    init = run_atrium_blocking("--project", str(project), "init", env=env)
    assert init.exit_code == 0, init.stderr
    found = re.search(r"password \(shown once\): (\S+)", init.stdout)
    assert found, init.stdout
    server_file = project / "services/mcp/atrium.yaml"
    free_server_ports(project)
    only_builtins(project, {*builtins, *(servers or {})})
    text = server_file.read_text()
    if dpop is not None:
        text = text.replace("audience: mcp", f"audience: mcp\n      dpop: {dpop}")
    server_file.write_text(text)
    for name, yaml in (servers or {}).items():
        (project / f"services/mcp/{name}.yaml").write_text(yaml)
    instance = Instance(project, base, found[1], env)
    try:
        instance.start()
        for name in set(builtins) - {"atrium"}:  # atrium: start() waited for it
            instance.wait_routed(name)
        yield instance
    finally:
        instance.stop()


async def call_tool(
    instance: Instance, token: str, server: str, tool: str, **arguments: Any
) -> CallToolResult:
    """One ``tools/call`` through the gateway with ``token``, as an external MCP client."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        transport = streamable_http_client(instance.url(server), http_client=http)
        async with Client(transport) as client:
            return await client.call_tool(tool, arguments)


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a call that succeeded."""
    assert not result.is_error, result
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


def refusal(result: CallToolResult) -> str:
    """The tool error's message, without the SDK's "Error executing tool <name>: "."""
    assert result.is_error, result
    text = "".join(c.text for c in result.content if isinstance(c, TextContent))
    return text.split(": ", 1)[1]
