"""The backend of the gateway benchmark: one trivial tool, served by Atrium's toolkit."""

from __future__ import annotations

from atrium import AtriumServer, ToolAnnotations, run

server = AtriumServer("bench", version="1.0.0")


# Read-only, and said so: anonymous callers of a server without sign-in may call only such tools.
@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Return ``text``."""
    return text


if __name__ == "__main__":
    run(server)
