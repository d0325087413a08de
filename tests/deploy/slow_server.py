"""A user's own server whose one tool takes as long as it is asked to, and notes each call the
moment it arrives: what tells a call that reached a gateway replica (and was forwarded here) from
one that never did, and shows a call that was sent twice."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio

from atrium import AtriumServer, run

server: AtriumServer[Any] = AtriumServer("slow", version="1.0.0")
ARRIVALS = Path(sys.argv[sys.argv.index("--arrivals") + 1]) if "--arrivals" in sys.argv else None


@server.tool()
async def wait(seconds: float, label: str) -> str:
    """Note ``label``, then answer it after ``seconds``."""
    if ARRIVALS is not None:
        with ARRIVALS.open("a") as arrivals:
            arrivals.write(label + "\n")
    await anyio.sleep(seconds)
    return label


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--arrivals" in argv:
        index = argv.index("--arrivals")
        del argv[index : index + 2]
    run(server, argv)
