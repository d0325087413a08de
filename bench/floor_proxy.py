"""The floor under the gateway benchmark: relaying a call in the gateway's own HTTP stack with
nothing of Atrium's work (issue 17). Started by ``bench/gateway.py``.

    .venv/bin/python bench/floor_proxy.py --port P --backend http://127.0.0.1:B/mcp

uvicorn as the gateway runs it (httptools, uvloop, no access log), and an ASGI app that reads
the body, forwards it with its MCP headers through the gateway's upstream client
(``atrium.gateway.origins``), reads the whole answer and sends it back with its status and
content type. No token, no JSON-RPC parsing or checks, no policy, no audit, no journal: what
the gateway costs beyond this is Atrium's own work; this is what Python, the event loop, the
sockets and the two HTTP/1.1 stacks cost per call.
"""

from __future__ import annotations

import argparse

import uvicorn
import uvloop
from starlette.types import Receive, Scope, Send

from atrium.gateway.origins import Upstream

FORWARDED = frozenset(
    {b"content-type", b"accept", b"mcp-protocol-version", b"mcp-method", b"mcp-name"}
)
CALL_TIMEOUT_S = 30.0


async def whole_body(receive: Receive) -> bytes:
    """A request's body, every message of it (also ``bench/gateway.py``'s canned backend)."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


class Relay:
    def __init__(self, backend: str) -> None:
        self._backend = backend
        self._upstream: Upstream | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = await whole_body(receive)
        headers = [(name, value) for name, value in scope["headers"] if name in FORWARDED]
        assert self._upstream is not None
        endpoint = self._upstream.endpoint(self._backend)
        answer = await endpoint.request("POST", headers, body, idle=CALL_TIMEOUT_S)
        try:
            data = await answer.read(CALL_TIMEOUT_S)
            kind = answer.header(b"content-type") or b"application/json"
        finally:
            answer.close()
        length = str(len(data)).encode()
        start = [(b"content-type", kind), (b"content-length", length)]
        await send({"type": "http.response.start", "status": answer.status, "headers": start})
        await send({"type": "http.response.body", "body": data})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._upstream = Upstream()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._upstream is not None:
                    self._upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        Relay(args.backend),
        host="127.0.0.1",
        port=args.port,
        loop="none",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
    uvloop.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
