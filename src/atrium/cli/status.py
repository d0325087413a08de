"""The status table shared by ``atrium plugins mcp status`` and ``atrium infra services status``."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from atrium.cli.context import CliState
from atrium.cli.tables import table
from atrium.runstate import read_state

if TYPE_CHECKING:
    from atrium.registry.loader import Registry


def status_rows(cli: CliState, registry: Registry) -> list[dict[str, Any]]:
    """One row per server: the supervisor's view of hosted ones, a live probe of remote ones."""
    from atrium.registry.schema import RemoteServer, port_of

    state = read_state(cli.settings.state_dir)
    remote = [e for e in registry if e.config.transport == "remote" and e.config.enabled]
    probes = asyncio.run(_probe_all(cli, remote)) if remote else {}
    now = time.time()
    rows = []
    for entry in registry:
        known = state.servers.get(entry.name) if state else None
        row: dict[str, Any] = {
            "name": entry.name,
            "enabled": entry.config.enabled,
            "transport": entry.config.transport,
            "port": port_of(entry.config),
            "state": known.state if known else "stopped",
            "pid": known.pid if known else None,
            "uptime_s": round(now - known.started_at, 1) if known and known.started_at else None,
            "restarts": known.restarts if known else 0,
            "binary": known.binary if known else None,
            "version": known.version if known else None,
            "last_error": known.last_error if known else None,
        }
        if entry.name in probes:
            probe = probes[entry.name]
            row["state"] = "reachable" if probe.reachable else "unreachable"
            row["last_error"] = None if probe.reachable else probe.detail
            row["binary"] = entry.config.url if isinstance(entry.config, RemoteServer) else None
            row["probe"] = {"detail": probe.detail, "elapsed_ms": round(probe.elapsed_ms, 1)}
        elif not entry.config.enabled and row["state"] == "stopped":
            row["state"] = "disabled"
        rows.append(row)
    return rows


async def _probe_all(cli: CliState, entries: list[Any]) -> dict[str, Any]:
    from atrium.supervisor.probe import probe_remote  # aiohttp, only when there is one

    results = await asyncio.gather(*(probe_remote(e, cli.settings) for e in entries))
    return {entry.name: result for entry, result in zip(entries, results, strict=True)}


def render(cli: CliState, rows: list[dict[str, Any]]) -> None:
    cells = [
        [
            row["name"],
            row["state"],
            str(row["pid"] or "-"),
            "-" if row["port"] is None else str(row["port"]),
            _uptime(row["uptime_s"]),
            str(row["restarts"]),
            " ".join(
                filter(None, [row["binary"], f"({row['version']})" if row["version"] else None])
            )
            or "-",
        ]
        for row in rows
    ]
    headers = ("name", "state", "pid", "port", "uptime", "restarts", "binary")
    cli.out.print(table(headers, cells, prose_last=True))
    for row in rows:
        if row["last_error"]:
            cli.err.print(f"[yellow]{row['name']}:[/] {escape(row['last_error'])}", highlight=False)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
