"""``atrium gateway``: the gateway alone, one replica among many (issue 18: scale-out).

``atrium start`` runs the gateway and the supervisor of this host's servers together. Scaled
out, gateways run on their own (as many as the load needs, behind a load balancer) and each
host's backends under ``atrium infra services start mcp``; they share the store and Redis.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Annotated

import typer

from atrium.cli.context import CliState
from atrium.errors import UsageError
from atrium.settings.sections import parse_workers

WorkersOption = Annotated[
    str | None,
    typer.Option(
        "--workers",
        metavar="N|auto",
        help="Gateway processes serving the port (auto: one per CPU); more than one needs"
        " redis.url. Default: gateway.workers (1).",
    ),
]


def with_workers(cli: CliState, workers: str | None) -> None:
    """``--workers`` over ``gateway.workers``."""
    if workers is None:
        return
    try:
        count = parse_workers(workers.strip())
    except ValueError as exc:
        raise UsageError(f"--workers {workers}: {exc}") from None
    cli.settings = replace(cli.settings, gateway_workers=count)


def gateway(
    ctx: typer.Context,
    sync: Annotated[
        bool,
        typer.Option(
            "--sync",
            help="First bring the store's registry in line with this project's services/mcp/"
            " (as `cloud sync` does); otherwise route what the store holds.",
        ),
    ] = False,
    workers: WorkersOption = None,
) -> None:
    """Run the gateway alone (no servers) until Ctrl-C: one replica of a scaled-out Atrium."""
    import uvloop

    from atrium.cli.infra import configure_logging
    from atrium.host import run_gateway

    cli: CliState = ctx.obj
    with_workers(cli, workers)
    registry = cli.registry() if sync else None
    configure_logging(cli)
    settings = cli.settings

    def started() -> None:
        url = f"http://{settings.gateway_host}:{settings.gateway_port}"
        cli.out.print(f"Gateway: {url}/api/v1/mcp/<server>/mcp", highlight=False)
        cli.out.print("Press Ctrl-C to stop.")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_gateway(settings, registry=registry, on_started=started))
    cli.out.print("Stopped.")
