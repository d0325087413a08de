"""``atrium plugins mcp tools|call|validate|test``: a server as a client sees it, via the gateway.

Each command connects with the official ``mcp`` client to the gateway's endpoint of the server
(``--url`` for another one), so it exercises what Claude Code or the Inspector would.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape

from atrium.cli.context import CliState, run_interruptible, state
from atrium.errors import AtriumError

if TYPE_CHECKING:  # the MCP SDK and the registry load only when a command needs them
    from mcp.types import CallToolResult

    from atrium.client.connect import Connection
    from atrium.registry.loader import ServerEntry

T = TypeVar("T")

ServerArgument = Annotated[str, typer.Argument(help="Server name.")]
OptionalServerArgument = Annotated[
    str | None,
    typer.Argument(help="Server name; without it, every enabled server.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="MCP endpoint to use instead of the gateway's"
        " (http://<gateway host>:<port>/api/v1/mcp/<server>/mcp). It gets $ATRIUM_TOKEN if"
        " set, else the operator's token when its host is this project's gateway's.",
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0.1,
        help="Seconds to wait for an answer (default: the server's timeout_s + 10).",
    ),
]
ProtocolOption = Annotated[
    str,
    typer.Option(
        "--protocol",
        help="auto (2026-07-28, else the initialize handshake), legacy (initialize"
        " handshake, 2025-11-25 and older) or a protocol version to adopt.",
    ),
]

# Past the server's own timeout_s, so the gateway's timeout error arrives before ours.
TIMEOUT_MARGIN_S = 10.0


@dataclass(frozen=True)
class Target:
    """Where and how a command connects."""

    server: str
    url: str
    timeout_s: float
    mode: str
    gateway: bool  # the gateway's URL (not --url): nothing answering means Atrium is down
    headers: Mapping[str, str] = field(default_factory=dict)

    def run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        return run_interruptible(self.session(work))

    async def session(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Connect, do ``work``, disconnect: one server's share of a run over several."""
        from atrium.client.connect import START_HINT, connect

        hint = START_HINT if self.gateway else None
        async with connect(
            self.url, headers=self.headers, timeout_s=self.timeout_s, mode=self.mode, hint=hint
        ) as connection:
            return await work(connection)


def target(
    cli: CliState, server: str, url: str | None, timeout: float | None, protocol: str
) -> Target:
    """The server, checked against the project's registry unless ``--url`` names the endpoint
    (with the token ``cli.url_token`` picks for it)."""
    from atrium.auth.operator import acting_caller
    from atrium.cli.url_token import url_headers
    from atrium.client.connect import DEFAULT_TIMEOUT_S

    if url is not None:
        if acting_caller(cli.settings) is not None:
            # Run for a caller of the atrium server: it reaches servers through the gateway
            # only, where their policy and the audit apply (never a backend port directly).
            raise AtriumError("--url is not available to a command run by the atrium server")
        headers = url_headers(cli.settings, url)
        timeout_s = timeout or DEFAULT_TIMEOUT_S
        return Target(server, url, timeout_s, protocol, gateway=False, headers=headers)
    return gateway_target(cli, cli.registry().get(server), timeout, protocol)


def gateway_target(
    cli: CliState, entry: ServerEntry, timeout: float | None, protocol: str
) -> Target:
    """``entry`` through the gateway, as the operator (or the caller the command runs for)."""
    from atrium.auth.operator import operator_token
    from atrium.client.connect import gateway_url

    default = entry.config.timeout_s + TIMEOUT_MARGIN_S
    # The operator calls through the gateway as admin, an acting caller as itself
    # (atrium.auth.operator says why).
    token = operator_token(cli.settings, entry.name)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Target(
        entry.name,
        gateway_url(cli.settings, entry.name),
        timeout or default,
        protocol,
        True,
        headers,
    )


def tools(
    ctx: typer.Context,
    server: OptionalServerArgument = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    timeout: TimeoutOption = None,
    protocol: ProtocolOption = "auto",
) -> None:
    """List the tools a server (default: every enabled one) offers through the gateway."""
    from atrium.cli.toolview import tools_table
    from atrium.client.checks import list_all_tools

    cli = state(ctx)
    if server is None and url is None:
        from atrium.cli.every_server import every_tools

        every_tools(cli, as_json=as_json, timeout=timeout, protocol=protocol)
        return
    server = server or str(url)
    found = target(cli, server, url, timeout, protocol).run(list_all_tools)
    if as_json:
        cli.print_json([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in found])
        return
    if not found:
        cli.out.print(f"{server} offers no tools.")
        return
    cli.out.print(tools_table(found))


def call(
    ctx: typer.Context,
    words: Annotated[
        list[str],
        typer.Argument(
            help="[SERVER] TOOL [KEY=VALUE]...: the server may be left out (or given with"
            " --server) when one enabled server offers the tool. A value is JSON when it parses.",
            metavar="[SERVER] TOOL [KEY=VALUE]",
            show_default=False,
        ),
    ],
    server_option: Annotated[
        str | None,
        typer.Option("--server", "-s", help="The server that offers the tool."),
    ] = None,
    args: Annotated[
        str | None,
        typer.Option(
            "--args", "-a", help="Arguments as a JSON object; @FILE reads a file, - stdin."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole CallToolResult.")
    ] = False,
    url: UrlOption = None,
    timeout: TimeoutOption = None,
    protocol: ProtocolOption = "auto",
) -> None:
    """Call a tool through the gateway; exit 1 when it answers with an error."""
    cli = state(ctx)
    if args is not None and (args == "-" or args.startswith("@")) and _acting(cli):
        # The atrium server's files (its keys among them) are not a caller's to send.
        raise AtriumError("--args @FILE and - are not available to a command run for a caller")
    server, tool, pairs = split_call_words(words, server_option)
    json_text = _json_text(args)
    _arguments(json_text, pairs, None)  # a typo fails before anything connects
    if server is None and url is None:
        from atrium.cli.every_server import server_offering

        server = server_offering(cli, tool, timeout=timeout, protocol=protocol)
    where = target(cli, server or str(url), url, timeout, protocol)
    _call_and_print(cli, where, tool, json_text, pairs, as_json=as_json)


def split_call_words(words: list[str], server: str | None) -> tuple[str | None, str, list[str]]:
    """``[SERVER] TOOL [KEY=VALUE]...`` as (server, tool, pairs).

    An MCP tool name never holds ``=`` (its characters are letters, digits, ``_-.``), so a
    second word without one is the tool after a server: ``call atrium list_playbooks``;
    otherwise the first word is the tool: ``call list_playbooks``, ``call now tz=UTC``.
    """
    if server is None and len(words) >= 2 and "=" not in words[1]:
        return words[0], words[1], words[2:]
    return server, words[0], words[1:]


def _call_and_print(
    cli: CliState,
    where: Target,
    tool: str,
    json_text: str | None,
    pairs: list[str],
    *,
    as_json: bool,
) -> None:
    from atrium.cli.toolview import error_text, print_result

    async def work(connection: Connection) -> tuple[CallToolResult, str | None]:
        return await _call(connection, tool, json_text, pairs)

    result, request_id = where.run(work)
    if as_json:
        cli.print_json(result.model_dump(mode="json", by_alias=True, exclude_none=True))
    elif result.is_error:
        cli.err.print(f"[red]tool error:[/] {escape(error_text(result))}", highlight=False)
    else:
        print_result(cli, result)
    if request_id:
        cli.err.print(f"request id: {request_id}", highlight=False, style="dim")
    if result.is_error:
        raise typer.Exit(1)


async def _call(
    connection: Connection, name: str, json_text: str | None, pairs: list[str]
) -> tuple[CallToolResult, str | None]:
    from atrium.client.checks import list_all_tools
    from atrium.errors import NotFoundError

    listed = {tool.name: tool for tool in await list_all_tools(connection)}
    if name not in listed:
        raise NotFoundError("tool", name, list(listed))
    arguments = _arguments(json_text, pairs, listed[name].input_schema)
    result = await connection.client.call_tool(name, arguments)
    return result, connection.last_request_id


def _acting(cli: CliState) -> bool:
    from atrium.auth.operator import acting_caller

    return acting_caller(cli.settings) is not None


def _json_text(args: str | None) -> str | None:
    from atrium.client.arguments import read_json_text

    if args is None:
        return None
    try:
        return read_json_text(args, sys.stdin)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--args") from None


def _arguments(json_text: str | None, pairs: list[str], schema: Any) -> dict[str, Any]:
    from atrium.client.arguments import parse_arguments

    try:
        return parse_arguments(json_text, pairs, schema)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def validate(
    ctx: typer.Context,
    server: OptionalServerArgument = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    timeout: TimeoutOption = None,
    protocol: ProtocolOption = "auto",
) -> None:
    """Connect and check a server (default: every enabled one): protocol, info, tools.

    Exits 1 when a server is invalid or cannot be reached.
    """
    from atrium.cli.toolview import render_report
    from atrium.client.checks import validate as check

    cli = state(ctx)
    if server is None and url is None:
        from atrium.cli.every_server import every_validation

        every_validation(cli, as_json=as_json, timeout=timeout, protocol=protocol)
        return
    where = target(cli, server or str(url), url, timeout, protocol)
    report = where.run(check)
    if as_json:
        cli.print_json({"server": where.server, **report.to_json()})
    else:
        render_report(cli, where.server, report)
    if not report.ok:
        raise typer.Exit(1)


def connectivity(
    ctx: typer.Context,
    server: ServerArgument,
    count: Annotated[
        int, typer.Option("--count", "-c", min=1, max=1000, help="Round trips to time.")
    ] = 3,
    as_json: JsonOption = False,
    url: UrlOption = None,
    timeout: TimeoutOption = None,
    protocol: ProtocolOption = "auto",
) -> None:
    """Test connectivity: connect, then time COUNT tools/list round trips (min/avg/max)."""
    from atrium.cli.toolview import render_timing
    from atrium.client.checks import measure

    cli = state(ctx)
    where = target(cli, server, url, timeout, protocol)
    timing = where.run(lambda connection: measure(connection, count))
    if as_json:
        cli.print_json({"server": where.server, **timing.to_json()})
    else:
        render_timing(cli, where.server, timing)
