"""Running an MCP server process: command-line options, logging, uvicorn, a clean stop.

The supervisor starts an HTTP server as ``<binary> --port <port> --project <dir>`` with
``ATRIUM_PROJECT``, ``ATRIUM_SERVER_NAME``, ``ATRIUM_SERVER_PORT`` and ``ATRIUM_CALLER_KEYS`` (the
gateway's public caller-assertion keys: every request but ``/health`` must carry an assertion
for this server's name, ``atrium.servers.trust``) set, sends its output to
``logs/mcp-<name>.log``, waits for ``GET /health``, and stops it with SIGTERM (SIGKILL after
10 s). So: ``--port`` falls back to ``ATRIUM_SERVER_PORT``, ``--project`` to
``ATRIUM_PROJECT``; logs are timestamped lines on stderr (and in ``--log-file`` too, for a
server run by hand); SIGTERM or SIGINT lets the calls in flight answer, then exits 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from mcp.server.mcpserver import MCPServer

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.errors import ConfigError
from atrium.servers import lifeline, shutdown
from atrium.servers.app import create_app
from atrium.settings import (
    CALLER_KEYS_VARIABLE,
    SERVER_PORT_VARIABLE,
    STATE_DIR,
    caller_keys_from_env,
    project_dir_from,
    server_name_from_env,
    server_port_from_env,
    supervised,
)

LogLevel = Literal["debug", "info", "warning", "error"]

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"

# Below the supervisor's 10 s between SIGTERM and SIGKILL, so a stop is still a clean exit.
DEFAULT_SHUTDOWN_TIMEOUT_S = 8


@dataclass(frozen=True)
class ServeOptions:
    """How to run one server process; see ``parse_options``."""

    port: int
    host: str = "127.0.0.1"
    project: Path | None = None
    log_file: Path | None = None
    log_level: LogLevel = "info"
    shutdown_timeout_s: int = DEFAULT_SHUTDOWN_TIMEOUT_S
    # The gateway's public caller-assertion keys; None only with --unauthenticated.
    caller_keys: Path | None = None
    # The name assertions must be addressed to (the registry's name for this server).
    name: str | None = None


def run(server: MCPServer[Any], argv: Sequence[str] | None = None) -> None:
    """Serve ``server`` on ``--port`` until SIGTERM or SIGINT; the body of a console script.

    ``argv`` defaults to ``sys.argv[1:]``. Bad options exit 2 with a usage message.
    """
    serve(server, parse_options(argv))


def parse_options(argv: Sequence[str] | None = None, *, prog: str | None = None) -> ServeOptions:
    """Parse the command line every Atrium-hosted server accepts."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        port = args.port if args.port is not None else server_port_from_env()
        project = project_dir_from(args.project)
    except ConfigError as exc:
        parser.error(str(exc))
    if port is None:
        parser.error(f"--port is required (or set {SERVER_PORT_VARIABLE})")
    keys = None if args.unauthenticated else _caller_keys(args.caller_keys, project)
    if keys is None and not args.unauthenticated:
        parser.error(
            f"no caller-assertion keys: pass --caller-keys (or set {CALLER_KEYS_VARIABLE}), or"
            f" --project of an initialised project ({STATE_DIR}/{PUBLIC_FILE}); to serve anyone"
            " for local development, --unauthenticated"
        )
    return ServeOptions(
        port=port,
        host=args.host,
        project=project,
        log_file=args.log_file,
        log_level=args.log_level,
        shutdown_timeout_s=args.shutdown_timeout,
        caller_keys=keys,
        name=server_name_from_env(),
    )


def _caller_keys(option: Path | None, project: Path) -> Path | None:
    """``--caller-keys``, else ``ATRIUM_CALLER_KEYS``, else the project's public key file."""
    if option is not None:
        return option
    from_env = caller_keys_from_env()
    if from_env is not None:
        return from_env
    default = project / STATE_DIR / PUBLIC_FILE
    return default if default.is_file() else None


def serve(server: MCPServer[Any], options: ServeOptions) -> None:
    """Set up logging, then serve ``server`` with uvicorn until asked to stop."""
    configure_logging(options.log_level, options.log_file)
    logger.info(
        "serving MCP server %s %s on http://%s:%d/mcp",
        server.name,
        server.version,
        options.host,
        options.port,
    )
    app = create_app(server, callers=_callers(options, server.name), host=options.host)
    if supervised():
        lifeline.watch_parent()
    shutdown.serve_until_stopped(
        app,
        host=options.host,
        port=options.port,
        log_level=options.log_level,
        timeout_s=options.shutdown_timeout_s,
    )


def _callers(options: ServeOptions, name: str) -> AssertionVerifier | None:
    if options.caller_keys is None:
        logger.warning(
            "--unauthenticated: serving anyone who reaches port %d; never run a server like"
            " this behind the gateway or on a shared machine",
            options.port,
        )
        return None
    try:
        return AssertionVerifier.load(options.caller_keys, options.name or name)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.exit(f"cannot read the caller-assertion keys {options.caller_keys}: {exc}")


def configure_logging(level: LogLevel, log_file: Path | None = None) -> None:
    """Timestamped lines to stderr, and to ``log_file`` when given; replaces earlier handlers.

    ``force``: the SDK's ``MCPServer()`` has already installed a Rich handler on the root logger
    (``mcp.server.mcpserver.utilities.logging``), whose boxes and colours do not belong in a log
    file.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=level.upper(),
        format=LOG_FORMAT,
        datefmt=LOG_DATE_FORMAT,
        handlers=handlers,
        force=True,
    )


def _parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve an MCP server over HTTP.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1).")
    parser.add_argument(
        "--port", type=_port, help=f"Port to listen on (default ${SERVER_PORT_VARIABLE})."
    )
    parser.add_argument(
        "--project",
        type=Path,
        help="Project folder (default $ATRIUM_PROJECT, else the current folder).",
    )
    parser.add_argument("--log-file", type=Path, help="Also append the log to this file.")
    parser.add_argument(
        "--caller-keys",
        type=Path,
        help=f"The gateway's public caller-assertion keys (default ${CALLER_KEYS_VARIABLE},"
        f" else the project's {STATE_DIR}/{PUBLIC_FILE}).",
    )
    parser.add_argument(
        "--unauthenticated",
        action="store_true",
        help="Serve requests without the gateway's caller assertion (local development only).",
    )
    parser.add_argument("--log-level", choices=get_args(LogLevel), default="info")
    parser.add_argument(
        "--shutdown-timeout",
        type=int,
        default=DEFAULT_SHUTDOWN_TIMEOUT_S,
        help="Seconds to let calls in flight finish after SIGTERM (default %(default)s).",
    )
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)
