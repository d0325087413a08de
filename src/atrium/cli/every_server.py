"""``atrium plugins mcp tools|validate|call`` without a server name: every enabled server.

Each enabled server is reached through the gateway as it is when named, all at once. A server
that cannot be reached (stopped, refusing, failing) becomes a row that says why, not the end
of the run; only when the gateway itself is down does the command stop with that one error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import typer

from atrium.cli.context import CliState
from atrium.cli.mcp_client import Target, gateway_target
from atrium.cli.safe_text import safe_text
from atrium.errors import AtriumError, UsageError

if TYPE_CHECKING:
    from mcp.types import Tool

    from atrium.client.checks import ServerReport
    from atrium.client.connect import Connection

T = TypeVar("T")


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What one server answered, or why it did not."""

    server: str
    value: T | None = None
    error: AtriumError | None = None

    def to_json(self) -> dict[str, Any]:
        return {"server": self.server, "error": None if self.error is None else str(self.error)}


def ask_every(
    cli: CliState,
    work: Callable[[Connection], Awaitable[T]],
    *,
    timeout: float | None,
    protocol: str,
) -> list[Answer[T]]:
    """``work`` on every enabled server at once, in the registry's order."""
    targets = [
        gateway_target(cli, entry, timeout, protocol)
        for entry in cli.registry()
        if entry.config.enabled
    ]

    async def one(where: Target) -> Answer[T]:
        try:
            return Answer(where.server, await where.session(work))
        except AtriumError as error:
            return Answer(where.server, error=error)

    async def every() -> list[Answer[T]]:
        return list(await asyncio.gather(*(one(where) for where in targets)))

    answers = asyncio.run(every())
    _stop_when_the_gateway_is_down(answers)
    return answers


def _stop_when_the_gateway_is_down(answers: Sequence[Answer[Any]]) -> None:
    """Nothing answering anywhere is Atrium not running: one error, not a row per server."""
    from atrium.client.connect import GatewayUnreachable

    down = [answer.error for answer in answers if isinstance(answer.error, GatewayUnreachable)]
    if down and len(down) == len(answers):
        raise down[0]


def every_tools(cli: CliState, *, as_json: bool, timeout: float | None, protocol: str) -> None:
    """One row per tool of every enabled server; exit 1 when a server could not be listed."""
    from atrium.cli.toolview import every_tools_table
    from atrium.client.checks import list_all_tools

    answers = ask_every(cli, list_all_tools, timeout=timeout, protocol=protocol)
    if as_json:
        cli.print_json([_tools_json(answer) for answer in answers])
    elif not answers:
        cli.err.print(f"No enabled MCP server in {cli.settings.mcp_dir}.")
    else:
        cli.out.print(every_tools_table(answers))
    failed = [answer for answer in answers if answer.error is not None]
    for answer in failed:  # the table's last column may be cut to fit: the reason in full
        reason = safe_text(str(answer.error))
        cli.err.print(f"{answer.server}: tools not listed: {reason}", markup=False)
    if failed:
        raise typer.Exit(1)


def _tools_json(answer: Answer[list[Tool]]) -> dict[str, Any]:
    tools = answer.value
    dumped = (
        None
        if tools is None
        else [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    )
    return {**answer.to_json(), "tools": dumped}


def every_validation(cli: CliState, *, as_json: bool, timeout: float | None, protocol: str) -> None:
    """One row per enabled server; exit 1 when any is invalid or cannot be reached."""
    from atrium.cli.toolview import validation_table
    from atrium.client.checks import validate

    answers = ask_every(cli, validate, timeout=timeout, protocol=protocol)
    if as_json:
        cli.print_json([_report_json(answer) for answer in answers])
    elif not answers:
        cli.err.print(f"No enabled MCP server in {cli.settings.mcp_dir}.")
    else:
        cli.out.print(validation_table(answers))
    if any(answer.value is None or not answer.value.ok for answer in answers):
        raise typer.Exit(1)


def _report_json(answer: Answer[ServerReport]) -> dict[str, Any]:
    if answer.value is None:
        return {**answer.to_json(), "ok": False}
    return {**answer.to_json(), **answer.value.to_json()}


def server_offering(cli: CliState, tool: str, *, timeout: float | None, protocol: str) -> str:
    """The one enabled server that lists ``tool``; a usage error when several do."""
    from atrium.client.checks import list_all_tools

    answers = ask_every(cli, list_all_tools, timeout=timeout, protocol=protocol)
    holders = [
        answer.server
        for answer in answers
        if answer.value is not None and any(found.name == tool for found in answer.value)
    ]
    if len(holders) == 1:
        return holders[0]
    if holders:
        raise UsageError(
            f"tool '{tool}' is offered by {len(holders)} servers ({', '.join(holders)});"
            " pass --server <name> to choose one"
        )
    unreached = [answer.server for answer in answers if answer.error is not None]
    missing = f"no enabled server offers tool '{tool}'"
    if unreached:
        missing += f" (could not list the tools of {', '.join(unreached)})"
    raise AtriumError(missing + "; see `atrium plugins mcp tools`")
