"""``atrium infra services start|stop|restart|status``, ``atrium start``, ``infra logs`` and
``infra usage``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from atrium.cli import logs, usage
from atrium.cli.context import CliState, state
from atrium.cli.gateway import WorkersOption, with_workers
from atrium.cli.status import render, status_rows
from atrium.errors import AtriumError
from atrium.runstate import running_supervisor
from atrium.supervisor import control

app = typer.Typer(help="Infrastructure: services, logs and usage.", no_args_is_help=True)
services = typer.Typer(help="Start, stop and watch the MCP server processes.", no_args_is_help=True)
app.add_typer(services, name="services")
app.add_typer(logs.app, name="logs")
app.command("usage")(usage.usage)

Targets = Annotated[
    list[str] | None,
    typer.Argument(help="`mcp` (every enabled server) or server names; default with --all."),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every enabled server.")]


def _names(cli: CliState, targets: list[str] | None, everything: bool) -> list[str] | None:
    """``None`` means every enabled server; otherwise validated names."""
    if everything or not targets or targets == ["mcp"]:
        return None
    registry = cli.registry()
    return [registry.get(name).name for name in targets]


def _with_gateway(targets: list[str] | None, everything: bool) -> bool:
    """``--all`` (or nothing named) is the gateway and every server; ``mcp`` only the servers."""
    return everything or not targets


@services.command("start")
def start(
    ctx: typer.Context,
    targets: Targets = None,
    everything: AllOption = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background.")] = False,
    workers: WorkersOption = None,
) -> None:
    """Start servers and keep them up (in the foreground until Ctrl-C, unless --detach)."""
    cli = state(ctx)
    with_workers(cli, workers)
    names = _names(cli, targets, everything)
    pid = running_supervisor(cli.settings.state_dir)
    if pid is not None:
        _start_in_running(cli, pid, names)
        return
    gateway = _with_gateway(targets, everything)
    if detach:
        from atrium.cli.detach import start_detached

        argv = ["infra", "services", "start", *(names or (["--all"] if gateway else ["mcp"]))]
        argv += [] if workers is None else ["--workers", workers]
        state_ = start_detached(cli.settings, argv)
        _print_status(cli)
        if any(s.state == "failed" for s in state_.servers.values()):
            raise typer.Exit(1)
        return
    _foreground(cli, names, gateway)


def _start_in_running(cli: CliState, pid: int, names: list[str] | None) -> None:
    from atrium.runstate import AlreadyRunning

    if names is None:
        raise AlreadyRunning(pid)
    answer = asyncio.run(control.request(cli.settings.state_dir, {"op": "start", "names": names}))
    results = answer["results"]
    for name in names:
        if name not in results:
            cli.out.print(f"{name}: already running")
    _report_stopped(cli, answer)
    if not _report(cli, results):
        raise typer.Exit(1)


def _report_stopped(cli: CliState, answer: dict[str, Any]) -> None:
    """The running servers the supervisor stopped because the YAML no longer runs them."""
    for name in answer.get("stopped", []):
        cli.out.print(
            f"[yellow]stopped[/] {escape(name)} (removed from services/mcp/ or disabled)",
            highlight=False,
        )


def _foreground(cli: CliState, names: list[str] | None, gateway: bool) -> None:
    from atrium.registry.loader import load_registry
    from atrium.supervisor.zygote import early_zygote

    registry = cli.registry()
    # Before the gateway's imports: the zygote imports the built-in servers meanwhile.
    chosen = [e for e in registry if e.config.enabled and (names is None or e.name in names)]
    early = early_zygote(cli.settings, (getattr(e.config, "binary", None) for e in chosen))

    import uvloop

    from atrium.host import run_foreground

    configure_logging(cli)

    def started(results: dict[str, str | None]) -> None:
        # A server that failed stays failed; the others keep running until Ctrl-C.
        _report(cli, results)
        if gateway:
            url = f"http://{cli.settings.gateway_host}:{cli.settings.gateway_port}"
            cli.out.print(f"Gateway: {url}/api/v1/mcp/<server>/mcp", highlight=False)
        cli.out.print("Press Ctrl-C to stop.")

    # uvloop: the gateway's hot path spends a third less CPU per request on it than on asyncio's
    # own loop (bench/gateway.py).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            run_foreground(
                cli.settings,
                registry,
                names,
                reload=lambda: load_registry(cli.settings),
                gateway=gateway,
                on_started=started,
                early_zygote=early,
            )
        )
    cli.out.print("Stopped.")


def configure_logging(cli: CliState) -> None:
    """Log lines to stderr and to logs/gateway.log, which `atrium infra logs view` reads.

    A ``WatchedFileHandler`` reopens the file when logrotate moves it away.
    """
    from logging.handlers import WatchedFileHandler

    from atrium.supervisor.logs import GATEWAY_LOG, IsoTimeFormatter

    cli.settings.logs_dir.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        logging.StreamHandler(),
        WatchedFileHandler(cli.settings.logs_dir / GATEWAY_LOG, encoding="utf-8"),
    ]
    for handler in handlers:
        handler.setFormatter(IsoTimeFormatter())
    logging.basicConfig(level=cli.settings.log_level.upper(), handlers=handlers, force=True)


def _report(cli: CliState, results: dict[str, str | None]) -> bool:
    """Print each server's outcome; whether all of them started."""
    if not results:
        cli.out.print("No server to start: enable one in services/mcp/ (enabled: true).")
    for name, error in results.items():
        if error is None:
            cli.out.print(f"[green]started[/] {name}", highlight=False)
        else:
            cli.err.print(f"[red]failed[/]  {name}: {escape(error)}", highlight=False)
    return all(error is None for error in results.values())


@services.command("stop")
def stop(ctx: typer.Context, targets: Targets = None, everything: AllOption = False) -> None:
    """Stop servers; with --all (or none named) stop the supervisor and every server."""
    cli = state(ctx)
    names = _names(cli, targets, everything)
    pid = running_supervisor(cli.settings.state_dir)
    if pid is None:
        cli.out.print("Atrium is not running.")
        return
    asyncio.run(control.request(cli.settings.state_dir, {"op": "stop", "names": names}))
    if names is None:
        _wait_for_exit(cli, pid)
        cli.out.print(f"Stopped (supervisor pid {pid}).")
    else:
        cli.out.print(f"Stopped {', '.join(names)}.")


def _wait_for_exit(cli: CliState, pid: int, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while running_supervisor(cli.settings.state_dir) is not None:
        if time.monotonic() > deadline:
            raise AtriumError(f"the supervisor (pid {pid}) did not stop within {deadline_s:g} s")
        time.sleep(0.1)


@services.command("restart")
def restart(ctx: typer.Context, targets: Targets = None, everything: AllOption = False) -> None:
    """Restart servers with their YAML as it is now: new servers start, removed ones stop,
    changed ones restart; a YAML that does not validate is refused and nothing changes."""
    from atrium.registry.loader import load_registry

    cli = state(ctx)
    load_registry(cli.settings)  # an invalid YAML is refused here, with its problems
    names = _names(cli, targets, everything)
    if running_supervisor(cli.settings.state_dir) is None:
        raise AtriumError(
            "Atrium is not running; start it with `atrium infra services start --all`"
        )
    answer = asyncio.run(control.request(cli.settings.state_dir, {"op": "restart", "names": names}))
    _report_stopped(cli, answer)
    if not _report(cli, answer["results"]):
        raise typer.Exit(1)


@services.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The supervisor and the state of every server."""
    cli = state(ctx)
    _print_status(cli, as_json)


def _print_status(cli: CliState, as_json: bool = False) -> None:
    rows = status_rows(cli, cli.registry())
    pid = running_supervisor(cli.settings.state_dir)
    if as_json:
        cli.print_json({"supervisor_pid": pid, "servers": rows})
        return
    cli.out.print(f"Supervisor: {'running, pid ' + str(pid) if pid else 'not running'}")
    render(cli, rows)
