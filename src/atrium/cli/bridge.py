"""``atrium bridge <url>``: serve a remote Atrium MCP endpoint as a local stdio server.

stdout is the MCP channel, so everything for the person (the sign-in link, errors) goes to
stderr; a client such as Claude Desktop shows it in its server log.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from atrium.errors import UsageError

DEFAULT_FOLDER = Path.home() / ".config" / "atrium" / "bridge"


def bridge(
    url: Annotated[str, typer.Argument(help="The remote endpoint, …/api/v1/mcp/<server>/mcp.")],
    credentials: Annotated[
        Path,
        typer.Option(
            "--credentials",
            help="Folder for the sign-in (DPoP key, tokens), mode 0700/0600.",
            file_okay=False,
        ),
    ] = DEFAULT_FOLDER,
    browser: Annotated[
        bool,
        typer.Option("--browser/--no-browser", help="Open the sign-in page in a browser."),
    ] = True,
) -> None:
    """Forward a stdio MCP client to a remote Atrium server, signing in with OAuth and DPoP."""
    import logging
    import webbrowser

    import anyio

    from atrium.client.credentials import CredentialStore
    from atrium.client.remote_bridge import credentials_path, run_bridge

    if not url.startswith(("https://", "http://")):
        raise UsageError(f"URL: {url!r} must start with https:// (or http:// for local use)")
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="atrium bridge: %(message)s"
    )
    store = CredentialStore(credentials_path(credentials, url))

    def open_browser(link: str) -> None:
        print(f"atrium bridge: sign in at {link}", file=sys.stderr, flush=True)
        if browser:
            webbrowser.open(link)

    anyio.run(run_bridge, url, store, open_browser)
