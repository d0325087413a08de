"""``atrium infra logs view|request list|audit``: the process logs and the audit trail."""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape

from atrium.cli.context import CliState, state
from atrium.errors import AtriumError
from atrium.supervisor.logs import LEVELS, LogLine, LogQuery, merge, parse_since, view_logs

app = typer.Typer(
    help="Logs: the gateway's and servers' log files, and the audit trail of MCP requests.",
    no_args_is_help=True,
)
request_app = typer.Typer(
    help="MCP requests through the gateway, from the audit trail.", no_args_is_help=True
)
app.add_typer(request_app, name="request")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", help="Only after this: a duration back from now (30m, 1h, 2d) or an ISO time."
    ),
]


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_since(text, datetime.now().astimezone())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def _level(name: str | None) -> int:
    if name is None:
        return 0
    try:
        return LEVELS[name.lower()]
    except KeyError:
        known = "debug, info, warning, error, critical"
        raise typer.BadParameter(f"{name!r} is not one of {known}", param_hint="--level") from None


@app.command("view")
def view(
    ctx: typer.Context,
    level: Annotated[
        str | None,
        typer.Option("--level", "-l", help="Minimum level: debug, info, warning, error, critical."),
    ] = None,
    since: SinceOption = None,
    server: Annotated[
        str | None,
        typer.Option("--server", "-s", help="That server's log, and the gateway lines naming it."),
    ] = None,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="Show the newest N lines; 0 for all.")
    ] = 200,
    as_json: JsonOption = False,
) -> None:
    """Show logs/gateway.log, logs/mcp-<name>.log and the tool calls of the audit trail merged
    in time order, each line after its file (``audit`` for a tool call).

    A line without a level of its own (a traceback) belongs to the record above it. A tool
    call is INFO, or WARNING when it failed.
    """
    from atrium.cli.logview import lines_json, print_lines

    cli = state(ctx)
    query = LogQuery(
        min_level=_level(level),
        since=_since(since),
        server=cli.registry().get(server).name if server else None,
        limit=lines or None,
    )
    if not cli.settings.logs_dir.is_dir():
        cli.err.print(f"No logs yet in {cli.settings.logs_dir}: start Atrium with `atrium start`.")
        return
    streams = [view_logs(cli.settings.logs_dir, query), _tool_calls(cli, query)]
    selected = list(deque(merge(streams), maxlen=query.limit))
    if as_json:
        cli.print_json(lines_json(selected))
    elif selected:
        print_lines(cli, selected)
    else:
        cli.err.print("No log line matches.")


def _tool_calls(cli: CliState, query: LogQuery) -> list[LogLine]:
    """The audit's tool calls ``query`` selects, as log lines; none (and a warning) when the
    store cannot be read, so the files are still shown."""
    from atrium.auth.operator import audit_subject
    from atrium.cli.logview import tool_call_lines

    if query.min_level > logging.WARNING:
        return []
    subject = audit_subject(cli.settings)
    try:
        records = cli.with_store(
            lambda store: store.audit.tool_calls(
                query.limit,
                server=query.server,
                since=query.since,
                subject=subject,
                failed_only=query.min_level > logging.INFO,
            )
        )
    except AtriumError as error:
        cli.err.print(f"[yellow]warning:[/] tool calls not shown: {escape(str(error))}")
        return []
    return tool_call_lines(records)


@request_app.command("list")
def list_requests(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N records.")] = 20,
    server: Annotated[str | None, typer.Option("--server", "-s", help="Only this server.")] = None,
    since: SinceOption = None,
    as_json: JsonOption = False,
) -> None:
    """The newest MCP requests: time, request id, server, method, tool, outcome, status, ms."""
    from atrium.auth.operator import audit_subject
    from atrium.cli.logview import record_json, requests_table

    cli = state(ctx)
    after = _since(since)
    subject = audit_subject(cli.settings)  # run for a caller: only its own records
    records = cli.with_store(
        lambda store: store.audit.list_recent(limit, server=server, since=after, subject=subject)
    )
    if as_json:
        cli.print_json([record_json(record, full=False) for record in records])
    elif records:
        cli.out.print(requests_table(records))
    else:
        cli.err.print("No request recorded" + (f" for server '{server}'." if server else "."))


@app.command("audit")
def audit(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(help="A request id from `infra logs request list`.")],
    full: Annotated[
        bool, typer.Option("--full", help="Add the (redacted) arguments and the error text.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Every audit record of one request: caller, method, tool, outcome, duration."""
    from atrium.auth.operator import audit_subject
    from atrium.cli.logview import print_audit, record_json

    cli = state(ctx)
    subject = audit_subject(cli.settings)
    records = cli.with_store(
        lambda store: store.audit.for_request(request_id.strip(), subject=subject)
    )
    if not records:
        raise AtriumError(
            f"no audit record of request '{request_id}'; see `atrium infra logs request list`"
        )
    if as_json:
        cli.print_json([record_json(record, full=full) for record in records])
    else:
        print_audit(cli, records, full=full)
