"""The gateway starts without the MCP SDK: loading the ``mcp`` package costs about half a
second of CPU (its protocol types), which ``atrium start`` would pay while the built-in
servers start on the same cores (issue 14's 3 s budget). It is loaded when a request needs it
(a tool with ``x-mcp-header`` parameters, a console page that calls a tool)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, sys
from pathlib import Path
from atrium.gateway.app import create_app
from atrium.settings import load_settings

async def main() -> None:
    folder = Path(sys.argv[1])
    (folder / "atrium.yaml").write_text("gateway: {}\\n")
    app = create_app(load_settings(folder, environ={}))
    async with app.router.lifespan_context(app):
        app.parts  # the routes, the console's and the agents' included, are built
    print(sorted(name for name in ("mcp", "mcp_types") if name in sys.modules))

asyncio.run(main())
"""


def test_the_gateway_starts_without_loading_the_mcp_package(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
