"""The backend of the gateway benchmark: one trivial tool, served by Atrium's toolkit."""

from __future__ import annotations

from atrium import AtriumServer, run

server = AtriumServer("bench", version="1.0.0")


@server.tool()
def echo(text: str) -> str:
    """Return ``text``."""
    return text


if __name__ == "__main__":
    run(server)
