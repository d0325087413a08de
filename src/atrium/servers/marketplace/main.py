"""``atrium-mcp-marketplace``: the console script of the built-in ``marketplace`` server."""

from __future__ import annotations

from collections.abc import Sequence

from atrium.servers.builtin import run_builtin
from atrium.servers.marketplace.server import create_server

PROG = "atrium-mcp-marketplace"


def main(argv: Sequence[str] | None = None) -> None:
    run_builtin(PROG, create_server, argv)


if __name__ == "__main__":
    main()
