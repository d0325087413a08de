"""A user's server, as small as one gets: one tool that holds a call open for a while.

Run as a script by ``test_shutdown.py``: ``python hold_server.py --port N``. The tool touches
``marker`` first, so the test knows the call is in flight before it sends SIGTERM.
"""

from __future__ import annotations

from typing import Any

import anyio

from atrium import AtriumServer, run

server: AtriumServer[Any] = AtriumServer("hold", version="0.1.0")


@server.tool()
async def hold(marker: str, seconds: float) -> str:
    await anyio.Path(marker).touch()
    await anyio.sleep(seconds)
    return "held"


if __name__ == "__main__":
    run(server)
