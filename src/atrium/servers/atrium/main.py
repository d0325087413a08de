"""``atrium-mcp-atrium``: the console script of the built-in ``atrium`` server.

Started by the supervisor as ``atrium-mcp-atrium --port <port> --project <dir>``; the options
are those of every hosted server (``atrium.servers.runner``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from atrium.errors import ConfigError
from atrium.servers.atrium.server import create_server
from atrium.servers.runner import parse_options, serve
from atrium.settings import load_settings

PROG = "atrium-mcp-atrium"


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv, prog=PROG)
    try:
        settings = load_settings(options.project)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    serve(create_server(settings), options)


if __name__ == "__main__":
    main()
