"""One gateway process, for tests of replicas: ``python -m tests.gateway.gateway_process DIR``.

Only the gateway of project ``DIR`` (no supervisor: the test serves the backends), configured by
its ``atrium.yaml`` and ``ATRIUM_*`` variables as ``atrium start`` would be, on
``ATRIUM_GATEWAY_PORT``. SIGTERM stops it as it stops uvicorn: the lifespan closes everything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from atrium.gateway.app import create_app
from atrium.gateway.serve import forwarding
from atrium.settings import load_settings


def main() -> None:
    settings = load_settings(Path(sys.argv[1]))
    app = create_app(settings, poll_s=60)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=settings.gateway_port,
        log_level="warning",
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=5,
        **forwarding(settings),
    )


if __name__ == "__main__":
    main()
