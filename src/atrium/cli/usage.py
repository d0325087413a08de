"""``atrium infra usage``: requests through the gateway per server, tool or client.

Summed from the audit trail, so it covers every replica of a scaled-out gateway and outlives
restarts, which the in-memory counters of ``/metrics`` do not.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from atrium.cli.context import state
from atrium.cli.logs import JsonOption, _since
from atrium.cli.tables import table

if TYPE_CHECKING:  # SQLAlchemy loads only when the command runs
    from atrium.store.audit import UsageBy, UsageRow


class By(StrEnum):
    SERVER = "server"
    TOOL = "tool"
    CLIENT = "client"


_KEYS: dict[By, UsageBy] = {By.SERVER: "server", By.TOOL: "tool", By.CLIENT: "client"}
_FIGURES = ("requests", "errors", "external", "in-app", "avg ms", "p50 ms", "p95 ms", "max ms")


def usage(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(
            "--since", help="From this on: a duration back from now (30m, 1h, 2d) or an ISO time."
        ),
    ] = "24h",
    by: Annotated[By, typer.Option("--by", help="One row per server, tool or OAuth client.")] = (
        By.SERVER
    ),
    as_json: JsonOption = False,
) -> None:
    """Requests, errors and latency per server, tool or client, external and in-app apart.

    Errors are every outcome but ok (tool errors, refusals, failures); --by tool counts only
    tools/call requests. In-app requests are those of Atrium's own clients (the CLI).
    """
    cli = state(ctx)
    after = _since(since)
    assert after is not None  # --since has a default
    from atrium.auth.operator import audit_subject

    subject = audit_subject(cli.settings)  # run for a caller: only its own requests
    rows = cli.with_store(lambda store: store.audit.usage(after, _KEYS[by], subject=subject))
    if as_json:
        cli.print_json({"since": after.isoformat(), "by": by.value, "rows": _json(rows)})
    elif rows:
        cli.out.print(_table(rows, by))
    else:
        cli.err.print(f"No request recorded since {_local(after)}.")


def _table(rows: list[UsageRow], by: By) -> Any:
    headers = ("server", "tool") if by is By.TOOL else (by.value,)
    cells = [
        [
            *(value or "-" for value in row.keys.values()),
            str(row.requests),
            str(row.errors),
            str(row.external),
            str(row.in_app),
            *(f"{ms:.1f}" for ms in (row.avg_ms, row.p50_ms, row.p95_ms, row.max_ms)),
        ]
        for row in rows
    ]
    return table((*headers, *_FIGURES), cells)


def _json(rows: list[UsageRow]) -> list[dict[str, Any]]:
    return [
        {
            **row.keys,
            "requests": row.requests,
            "errors": row.errors,
            "external": row.external,
            "in_app": row.in_app,
            "avg_ms": row.avg_ms,
            "p50_ms": row.p50_ms,
            "p95_ms": row.p95_ms,
            "max_ms": row.max_ms,
        }
        for row in rows
    ]


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
