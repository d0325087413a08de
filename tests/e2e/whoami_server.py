"""A user's own server on Atrium's toolkit, as the README shows it: it tells who calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from atrium import AtriumServer, Context, ToolAnnotations, current_caller, run

server: AtriumServer[Any] = AtriumServer("whoami", version="1.0.0")
CALLS = Path(sys.argv[sys.argv.index("--calls") + 1]) if "--calls" in sys.argv else None


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def whoami(ctx: Context) -> str:
    """Who the gateway says is calling."""
    caller = current_caller(ctx)
    if CALLS is not None:
        with CALLS.open("a") as calls:
            calls.write(caller.request_id + "\n")
    identity = {
        "subject": caller.subject,
        "client_id": caller.client_id,
        "scopes": sorted(caller.scopes),
        "origin": caller.origin,
    }
    return json.dumps(identity)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--calls" in argv:
        index = argv.index("--calls")
        del argv[index : index + 2]
    run(server, argv)
