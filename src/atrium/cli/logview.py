"""How ``atrium infra logs`` prints log lines and audit records.

Both hold outside data (a tool name a caller made up, what a backend logged), printed through
``safe_text``: never a character that acts on the terminal (``atrium.cli.safe_text``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text

from atrium.cli.context import CliState
from atrium.cli.safe_text import safe_text
from atrium.cli.tables import Cell, table
from atrium.supervisor.logs import LogLine

if TYPE_CHECKING:
    from atrium.store.audit import AuditRecord

_LEVEL_STYLES = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}
AUDIT_SOURCE = "audit"  # in place of a file name: the lines come from the audit store


def tool_call_lines(records: Sequence[AuditRecord]) -> list[LogLine]:
    """A log line per tool call, in time order: INFO when it went well, WARNING when not.

    ``... INFO atrium.audit: mcp tool call <server>/<tool> caller=... outcome=ok status=200
    duration_ms=4.2 request_id=...``: the words the seeds' ``| grep "mcp"`` finds.
    """
    lines = []
    for record in sorted(records, key=lambda r: r.at):
        level = logging.INFO if record.outcome == "ok" else logging.WARNING
        moment = record.at.astimezone()
        client = f" client={record.client_id}" if record.client_id else ""
        text = (
            f"{moment.isoformat(timespec='milliseconds')} {logging.getLevelName(level)}"
            f" atrium.audit: mcp tool call {record.server}/{record.tool}"
            f" caller={record.caller}{client} outcome={record.outcome} status={record.status}"
            f" duration_ms={record.duration_ms:.1f} request_id={record.request_id}"
        )
        lines.append(LogLine(AUDIT_SOURCE, text, moment, level, text))
    return lines


def print_lines(cli: CliState, lines: Sequence[LogLine]) -> None:
    """``<file>  <line as written>``, the file names padded to one width."""
    width = max((len(line.source) for line in lines), default=0)
    for line in lines:
        prefix, shown = safe_text(line.source.ljust(width)), safe_text(line.text)
        if not cli.out.is_terminal:  # a pipe: the text as written, never wrapped
            print(f"{prefix}  {shown}")
            continue
        text = Text(f"{prefix}  ", style="dim")
        text.append(shown, style=_LEVEL_STYLES.get(line.level_name, ""))
        cli.out.print(text, soft_wrap=True)


def lines_json(lines: Sequence[LogLine]) -> list[dict[str, Any]]:
    return [
        {
            "source": line.source,
            "time": line.at.isoformat() if line.at else None,
            "level": line.level_name,
            "text": line.text,
        }
        for line in lines
    ]


def _local(record: AuditRecord, *, precise: bool = False) -> str:
    moment = record.at.astimezone()
    if precise:
        return moment.isoformat(sep=" ", timespec="milliseconds")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def requests_table(records: Sequence[AuditRecord]) -> Any:
    headers = ("time", "request id", "server", "method", "tool", "outcome", "status", "ms")
    cells = [
        [
            _local(record),
            record.request_id,
            record.server,
            record.method or "-",
            record.tool or "-",
            record.outcome,
            str(record.status),
            f"{record.duration_ms:.1f}",
        ]
        for record in records
    ]
    return table(headers, cells)


def record_json(record: AuditRecord, *, full: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "request_id": record.request_id,
        "time": record.at.isoformat(),
        "server": record.server,
        "method": record.method,
        "tool": record.tool,
        "caller": record.caller,
        "subject": record.subject,
        "client_id": record.client_id,
        "origin": record.origin,
        "outcome": record.outcome,
        "status": record.status,
        "duration_ms": record.duration_ms,
    }
    if full:
        data["arguments"] = record.arguments
        data["error"] = record.error
    return data


def print_audit(cli: CliState, records: Sequence[AuditRecord], *, full: bool) -> None:
    """Each record of one request as a key/value table."""
    for index, record in enumerate(records, start=1):
        title = f"request {safe_text(record.request_id)}"
        if len(records) > 1:
            title += f" ({index} of {len(records)}: a batch)"
        rows: list[list[Cell]] = [
            ["time", _local(record, precise=True)],
            ["server", record.server],
            ["method", record.method or "-"],
            ["tool", record.tool or "-"],
            ["caller", f"{record.caller} (client {record.client_id or '-'}, {record.origin})"],
            ["outcome", f"{record.outcome} (HTTP {record.status})"],
            ["duration", f"{record.duration_ms:.1f} ms"],
        ]
        if full:
            rows.append(["arguments", _json_text(record.arguments)])
            rows.append(["error", record.error or "-"])
        cli.out.print(title, highlight=False, markup=False)
        cli.out.print(table(("field", "value"), rows, prose_last=True))
    if not full and any(r.arguments is not None or r.error for r in records):
        cli.err.print("Arguments and error text: add --full.")


def _json_text(value: Any) -> Text:
    """Indented JSON: its newlines are its own (JSON escapes those of strings), but not DEL,
    C1 or bidi characters, which ``ensure_ascii=False`` leaves as they are."""
    if value is None:
        return Text("-")
    pretty = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return Text(safe_text(pretty, multiline=True))
