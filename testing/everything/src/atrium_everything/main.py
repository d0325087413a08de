"""``atrium-mcp-everything``: the console script of the everything server.

Run as every hosted server is (``atrium.servers.runner``):
``atrium-mcp-everything --port <port> [--project <dir>]``; the project is not used.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from mcp.shared.exceptions import MCPDeprecationWarning

from atrium.servers.runner import parse_options, serve
from atrium_everything.server import create_server

PROG = "atrium-mcp-everything"


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv, prog=PROG)
    # Logging and mid-call sampling are deprecated since 2026-07-28 (SEP-2577), and this
    # server serves them on purpose, to 2025-11-25 clients: its log need not say so each time.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    serve(create_server(), options)


if __name__ == "__main__":
    main()
