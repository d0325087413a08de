"""Run the MCP conformance suite's ``server`` scenarios under both protocol eras; sum up.

Called by ``scripts/conformance`` (which installs Node 22 and the suite first). Without
``--url`` it brings up what it tests: ``atrium start`` in a scratch project that hosts only
``atrium-mcp-everything`` (supervisor, server and gateway, as a user runs them); the suite then
runs against ``http://127.0.0.1:<gateway port>/api/v1/mcp/everything/mcp``. ``--direct`` tests
the server alone instead, and the summary says which was tested.

Each requirement set is one run of ``conformance server --url URL --requirements REV -o DIR``:
the scenarios that revision requires, frozen at its release and spoken at its wire
(2026-07-28: stateless, per-request ``_meta``; 2025-11-25: ``initialize`` and sessions), plus
the scenarios the suite runs only for visibility (``not_scored``: the tasks extension, pending
ones). The suite exits 1 only when a scored scenario fails; this script exits 1 when any
scenario of either run fails, scored or not, or left no results, and when the authorization
scenarios fail: CI holds Atrium to all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from conformance_auth import run_authorization
from conformance_report import RunReport, describe, read_run

REVISIONS = ("2026-07-28", "2025-11-25")
NODE_MAJOR = "v22."
SERVER_NAME = "everything"
GATEWAY_MCP_PATH = f"/api/v1/mcp/{SERVER_NAME}/mcp"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    node_version = _node_version(args.node)
    revisions = args.requirements or list(REVISIONS)
    args.results.mkdir(parents=True, exist_ok=True)
    authorization: tuple[bool, str] | None = None
    with ExitStack() as stack:
        if args.url:
            url, target = args.url, "the given URL"
        else:
            url, target = stack.enter_context(_system_under_test(args.results, args.direct))
        print(f"conformance: {target}: {url} (Node {node_version})", flush=True)
        reports = [_run_suite(args, revision, url) for revision in revisions]
        if not args.url and not args.direct:
            base_url = url.removesuffix(GATEWAY_MCP_PATH)
            project = args.results / "project"
            authorization = run_authorization(
                args.node, args.suite, args.results, base_url, url, project
            )
    return _summarise(reports, url, target, authorization)


@contextmanager
def _system_under_test(results: Path, direct: bool) -> Iterator[tuple[str, str]]:
    """The everything server hosted behind the gateway, or alone with --direct: (URL, what)."""
    if direct:
        with _everything_server(_free_port(), results) as backend_url:
            yield f"{backend_url}/mcp", "the everything server directly (--direct)"
        return
    with _hosted_behind_gateway(results) as gateway_url:
        yield f"{gateway_url}{GATEWAY_MCP_PATH}", "the gateway in front of a hosted everything"


@contextmanager
def _hosted_behind_gateway(workdir: Path) -> Iterator[str]:
    """``atrium start`` in a project hosting only ``everything``: supervisor, server, gateway.

    The real path a client takes: the gateway routes from the store (synced from the YAML at
    start) to the server the supervisor started and watches.
    """
    project = workdir / "project"
    shutil.rmtree(project, ignore_errors=True)
    (project / "services/mcp").mkdir(parents=True)
    server_port, gateway_port = _free_port(), _free_port()
    (project / "services/mcp/everything.yaml").write_text(
        "mcp_servers:\n"
        f"  {SERVER_NAME}:\n"
        "    binary: atrium-mcp-everything\n"
        f"    port: {server_port}\n"
        "    oauth: {required: false}\n"
        # The suite calls anonymously, and the list-change tools (SEP-2575 subscriptions) are
        # not read-only: public, as the everything server's tools change nothing that lasts.
        "    tools: {public: ['*']}\n"
    )
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(gateway_port),
        # The issuer and the resources clients name are the URL they connect to.
        "ATRIUM_PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    log_path = workdir / "atrium-start.log"
    argv = [sys.executable, "-m", "atrium", "--project", str(project), "start"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{gateway_port}"
    try:
        _wait_healthy(process, f"{base_url}/health", log_path)
        _wait_routed(process, f"{base_url}/api/v1/mcp/registry/{SERVER_NAME}", log_path)
        yield base_url
    finally:
        _stop(process)


def _wait_routed(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until the registry lists the server as running (the supervisor started it)."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if json.loads(response.read()).get("status") == "running":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.1)
    _stop(process)
    sys.exit(f"conformance: {SERVER_NAME} never ran behind the gateway:\n{log.read_text()}")


@contextmanager
def _everything_server(port: int, workdir: Path) -> Iterator[str]:
    """``atrium-mcp-everything`` on 127.0.0.1:``port`` until exit; yields its base URL."""
    binary = shutil.which("atrium-mcp-everything", path=str(Path(sys.executable).parent))
    if binary is None:
        sys.exit("conformance: atrium-mcp-everything is not installed in this venv (make install)")
    log_path = workdir / "everything.log"
    # --direct measures the server alone: no gateway vouches for the suite's requests.
    argv = [binary, "--port", str(port), "--project", str(workdir), "--unauthenticated"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, f"{base_url}/health", log_path)
        yield base_url
    finally:
        _stop(process)


def _run_suite(args: argparse.Namespace, revision: str, url: str) -> RunReport:
    results = args.results / revision
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    argv = [str(args.node), str(args.suite / "dist" / "index.js"), "server", "--url", url]
    argv += ["--requirements", revision, "--output-dir", str(results)]
    log_path = args.results / f"{revision}.log"
    print(f"conformance: running the {revision} requirement set (log: {log_path})", flush=True)
    started = time.monotonic()
    with log_path.open("wb") as log:
        output = None if args.verbose else log
        exit_code = subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    report = read_run(args.suite, revision, results, exit_code=exit_code, seconds=seconds)
    for line in describe(report):
        print(line, flush=True)
    return report


def _summarise(
    reports: list[RunReport], url: str, target: str, authorization: tuple[bool, str] | None
) -> int:
    print("\n=== conformance summary ===")
    print(f"target: {target}: {url}")
    for report in reports:
        print(describe(report)[0])
    ok = all(report.ok for report in reports)
    if authorization is not None:
        passed, summary = authorization
        verdict = "PASS" if passed else "FAIL"
        print(f"authorization (Atrium's authorization server): {verdict} - {summary}")
        ok = ok and passed
    print("result: every scenario passed, scored or not" if ok else "result: FAILED")
    return 0 if ok else 1


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        if process.poll() is not None:
            sys.exit(f"conformance: the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            _stop(process)
            sys.exit(f"conformance: {url} not healthy in {START_DEADLINE_S} s:\n{log.read_text()}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _node_version(node: Path) -> str:
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True).stdout
    if not version.startswith(NODE_MAJOR):
        sys.exit(f"conformance: {node} is Node {version.strip() or '?'}, the suite needs Node 22")
    return version.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/conformance",
        description="Run the MCP conformance suite's server scenarios against Atrium.",
    )
    parser.add_argument("--url", help="MCP endpoint to test (default: start everything here).")
    parser.add_argument(
        "--requirements",
        action="append",
        choices=REVISIONS,
        help="Requirement set to run; repeat for several (default: both).",
    )
    parser.add_argument(
        "--direct", action="store_true", help="Test the everything server without the gateway."
    )
    parser.add_argument("--verbose", action="store_true", help="Show the suite's own output.")
    parser.add_argument("--node", type=Path, required=True, help="The Node 22 binary.")
    parser.add_argument("--suite", type=Path, required=True, help="The conformance package.")
    parser.add_argument("--results", type=Path, required=True, help="Where results are kept.")
    return parser


if __name__ == "__main__":
    sys.exit(main())
