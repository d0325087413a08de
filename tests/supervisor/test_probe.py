"""A remote server has no process: `plugins mcp status` probes its URL instead."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.cli.helpers import run_atrium
from tests.processes import free_port


class NoGetStream(http.server.BaseHTTPRequestHandler):
    """An MCP endpoint that offers no GET stream: 405, as the spec allows."""

    seen_headers: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        NoGetStream.seen_headers.append(dict(self.headers))
        self.send_response(405)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def remote_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoGetStream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mcp"
    finally:
        server.shutdown()
        server.server_close()


def project(tmp_path: Path, up: str, down: str) -> Path:
    (tmp_path / "services/mcp").mkdir(parents=True)
    servers = {
        "up": {"transport": "remote", "url": up, "headers": {"Authorization": {"$env": "UP_AUTH"}}},
        "down": {"transport": "remote", "url": down},
    }
    (tmp_path / "services/mcp/remote.yaml").write_text(json.dumps({"mcp_servers": servers}))
    return tmp_path


def test_status_probes_remote_servers_with_their_credentials(
    tmp_path: Path, remote_url: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/mcp"
    root = project(tmp_path, remote_url, closed)

    result = run_atrium(
        "--project", str(root), "plugins", "mcp", "status", "--json", env={"UP_AUTH": "Bearer t0k"}
    )

    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["up"]["state"] == "reachable"
    assert rows["up"]["probe"]["detail"] == "HTTP 405"
    assert rows["down"]["state"] == "unreachable"
    assert "unreachable" in rows["down"]["last_error"]
    assert NoGetStream.seen_headers[-1]["Authorization"] == "Bearer t0k"
