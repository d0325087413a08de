"""A minimal stdio MCP server for ``bench/client.py``, standard library only, so its own start
costs little CPU: ``python bench/stdio_echo.py [--ready-after SECONDS]``.

``--ready-after`` holds the first answer back that long, as a server does whose start waits on
I/O (a database, a login, a cold cache): what connecting servers in parallel saves.
It answers ``initialize`` (any version the client names, else 2025-11-25), ``tools/list`` with
one ``echo`` tool and ``tools/call`` of it; ``server/discover`` is "method not found", so the
client falls back to ``initialize``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

ECHO = {
    "name": "echo",
    "description": "Echo the message back.",
    "inputSchema": {
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
    },
}


def answer(request: dict[str, Any]) -> dict[str, Any] | None:
    method, params = request.get("method"), request.get("params") or {}
    if "id" not in request:
        return None  # a notification
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stdio-echo", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": [ECHO]}
    elif method == "tools/call":
        text = str((params.get("arguments") or {}).get("message", ""))
        result = {"content": [{"type": "text", "text": text}]}
    elif method == "ping":
        result = {}
    else:
        error = {"code": -32601, "message": f"method not found: {method}"}
        return {"jsonrpc": "2.0", "id": request["id"], "error": error}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready-after", type=float, default=0.0)
    delay = parser.parse_args().ready_after
    for line in sys.stdin:
        if delay:
            time.sleep(delay)
            delay = 0.0
        reply = answer(json.loads(line))
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
