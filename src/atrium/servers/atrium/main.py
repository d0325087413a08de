"""``atrium-mcp-atrium``: the console script of the built-in ``atrium`` server.

Started by the supervisor as ``atrium-mcp-atrium --port <port> --project <dir>``; the options
are those of every hosted server (``atrium.servers.runner``).
"""

from __future__ import annotations

from collections.abc import Sequence

from atrium.servers.atrium.server import create_server
from atrium.servers.builtin import run_builtin

PROG = "atrium-mcp-atrium"


def main(argv: Sequence[str] | None = None) -> None:
    run_builtin(PROG, create_server, argv)


if __name__ == "__main__":
    main()
