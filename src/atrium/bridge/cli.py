"""``atrium-stdio-bridge``: the command line the supervisor runs for a ``transport: stdio`` server.

    atrium-stdio-bridge --name NAME --port PORT [--host 127.0.0.1] -- COMMAND [ARGS...]

Like every backend Atrium runs, the bridge serves only requests that carry the gateway's
caller assertion for ``NAME`` (``atrium.servers.trust``), checked with the public keys named by
``--caller-keys`` or ``ATRIUM_CALLER_KEYS`` (the supervisor sets it); ``--unauthenticated``
serves anyone, for local development only.

The bridge is its own process: it configures its own logging (to stderr, which the supervisor
sends to ``logs/mcp-<name>.log``) and takes everything else from the command line. The server's
environment is the bridge's own: the supervisor has already reduced it to what the server may
see, and the child inherits all of it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from atrium.bridge.service import EXIT_FAILURE, BridgeOptions, run_bridge
from atrium.registry.schema import SERVER_NAME
from atrium.servers.lifeline import watch_parent
from atrium.settings import CALLER_KEYS_VARIABLE, caller_keys_from_env, supervised

logger = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")
# Loggers of the SDK and its HTTP stack: one line per session or request at INFO, so they
# speak from WARNING unless the bridge runs at debug level.
CHATTY_LOGGERS = ("mcp", "client", "httpx", "httpx2", "uvicorn.error")


def parse_args(argv: Sequence[str] | None = None) -> tuple[BridgeOptions, str]:
    """The options and the log level; exits with status 2 and a usage message when invalid."""
    parser = argparse.ArgumentParser(
        prog="atrium-stdio-bridge",
        description="Serve a stdio MCP server over Streamable HTTP.",
    )
    parser.add_argument("--name", required=True, help="the server's name in the registry")
    parser.add_argument("--port", required=True, type=int, help="the port to serve /mcp on")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument(
        "--init-timeout",
        default=60.0,
        type=float,
        help="seconds the server may take to answer initialize (npx may download it first)",
    )
    parser.add_argument(
        "--caller-keys",
        type=Path,
        help=f"the gateway's public caller-assertion keys (default ${CALLER_KEYS_VARIABLE})",
    )
    parser.add_argument(
        "--unauthenticated",
        action="store_true",
        help="serve requests without the gateway's caller assertion (development only)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the server's command after --, e.g. -- uvx mcp-server-time")
    if not SERVER_NAME.match(args.name):
        parser.error(f"--name {args.name!r} is not a server name (lowercase, digits, -)")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port")
    if args.init_timeout <= 0:
        parser.error("--init-timeout must be positive")
    keys = None if args.unauthenticated else (args.caller_keys or caller_keys_from_env())
    if keys is None and not args.unauthenticated:
        parser.error(
            f"no caller-assertion keys: pass --caller-keys (or set {CALLER_KEYS_VARIABLE}),"
            " or --unauthenticated for local development"
        )
    options = BridgeOptions(
        name=args.name,
        command=tuple(command),
        port=args.port,
        host=args.host,
        init_timeout_s=args.init_timeout,
        caller_keys=keys,
    )
    return options, args.log_level


def configure_logging(server: str, level: str) -> None:
    """Timestamped lines on stderr, each naming the server (the log file may be shared)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s [{server}] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level != "debug":
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    options, level = parse_args(argv)
    configure_logging(options.name, level)
    if supervised():
        watch_parent()  # the bridge's own stop then stops its child too
    try:
        return anyio.run(run_bridge, options)
    except Exception:
        logger.exception("the bridge failed")
        return EXIT_FAILURE
