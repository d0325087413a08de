"""``atrium connect SERVER --client NAME``: how an MCP client reaches a hosted server.

Prints the exact configuration (Claude Code, Cursor, VS Code; Claude Desktop through
``atrium bridge``), command line (MCP Inspector) or steps (ChatGPT) for the server's public
endpoint; ``--write`` merges the entry into the client's
file (``atrium.client.configs``). Clients sign in by OAuth discovery on their own, so entries
carry no headers unless ``--token`` embeds a bearer token minted as ``admin token issue`` does.

The configuration goes to stdout (pipe it where you like); notes on where it goes, sign-in and
secrets go to stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

# The user lookup of `admin token issue`, so both refuse an unknown or disabled user alike.
from atrium.auth.uris import is_this_machine
from atrium.cli.context import CliState, state
from atrium.client.configs import (
    DEFAULT_FILES,
    ChatGptSetup,
    Client,
    ConfigFileError,
    Connection,
    FileClient,
    atrium_command,
    chatgpt_steps,
    claude_desktop_file,
    document,
    inspector_command,
    merge,
    render,
    write_atomically,
)
from atrium.errors import UsageError, display_path

if TYPE_CHECKING:
    from atrium.registry.schema import ServerConfig

MAX_TTL_S = 30 * 86400

ClientOption = Annotated[
    Client,
    typer.Option(
        "--client", help="claude-code, claude-desktop, cursor, vscode, chatgpt or inspector."
    ),
]
WriteOption = Annotated[
    bool, typer.Option("--write", help="Merge the entry into the client's file.")
]
FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file", help="The file --write merges into (default: the client's own).", dir_okay=False
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Let --write replace an entry of the same name.")
]
TokenOption = Annotated[
    bool, typer.Option("--token", help="Embed an 'Authorization: Bearer' token for --user.")
]
UserOption = Annotated[str | None, typer.Option("--user", help="Whose token --token mints.")]
ScopesOption = Annotated[
    list[str] | None,
    typer.Option("--scopes", help="The token's scopes (default: all of the user's role)."),
]
TtlOption = Annotated[int | None, typer.Option("--ttl", help="The token's lifetime in seconds.")]


def connect(
    ctx: typer.Context,
    server: Annotated[str, typer.Argument(help="The hosted server to connect to.")],
    client: ClientOption,
    write: WriteOption = False,
    file: FileOption = None,
    force: ForceOption = False,
    token: TokenOption = False,
    user: UserOption = None,
    scopes: ScopesOption = None,
    ttl: TtlOption = None,
) -> None:
    """Print how CLIENT connects to SERVER through the gateway, or --write it to its file."""
    _check(client, write=write, file=file, token=token, user=user, scopes=scopes, ttl=ttl)
    cli = state(ctx)
    config = cli.registry().get(server).config
    if not config.enabled:
        _note(cli, f"'{server}' is disabled (enabled: false): the gateway refuses it until enabled")
    headers = {}
    if token and user is not None:
        headers["Authorization"] = f"Bearer {_mint(cli, user, server, scopes or [], ttl)}"
    launcher = atrium_command(sys.executable, sys.platform)
    connection = Connection(server, cli.settings.endpoint_for(server), headers, launcher)
    if client == "chatgpt":
        _chatgpt(cli, server, config)
    elif client == "inspector":
        print(inspector_command(connection))
        _sign_in_note(cli, client, config, connection)
    else:
        _file_client(cli, client, connection, config, file, write, force)


def _check(
    client: Client,
    *,
    write: bool,
    file: Path | None,
    token: bool,
    user: str | None,
    scopes: list[str] | None,
    ttl: int | None,
) -> None:
    """Refuse option combinations that cannot mean anything, naming the option."""
    if client in ("chatgpt", "inspector") and (write or file is not None):
        option = "--write" if write else "--file"
        raise UsageError(f"{option}: {client} has no configuration file; copy what is printed")
    if file is not None and not write:
        raise UsageError("--file: names the file --write merges into; add --write")
    if token and client == "chatgpt":
        raise UsageError("--token: ChatGPT signs in with OAuth and takes no bearer token")
    if token and client == "claude-desktop":
        raise UsageError("--token: Claude Desktop's atrium bridge signs in with OAuth itself")
    if token and user is None:
        raise UsageError("--token: needs --user NAME, the user the token is for")
    options = (("--user", user), ("--scopes", scopes), ("--ttl", ttl))
    given = [name for name, value in options if value is not None]
    if given and not token:
        raise UsageError(f"{given[0]}: only with --token")
    if ttl is not None and not 60 <= ttl <= MAX_TTL_S:
        raise UsageError("--ttl: must be between 60 seconds and 30 days")


def _mint(cli: CliState, user: str, server: str, scopes: list[str], ttl: int | None) -> str:
    """An access token for ``user`` on ``server``, as ``atrium admin token issue`` mints it."""
    from atrium.cli.admin_token import user_token

    lifetime = ttl if ttl is not None else cli.settings.oauth.access_token_ttl_s
    value = user_token(cli, user, server, scopes, lifetime)
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + lifetime))
    _note(cli, f"the bearer token is user {user!r}'s until {expires}; treat it as a password")
    return str(value)


def _file_client(
    cli: CliState,
    client: FileClient,
    connection: Connection,
    config: ServerConfig,
    file: Path | None,
    write: bool,
    force: bool,
) -> None:
    if write:
        _write(cli, client, connection, file or _default_file(cli, client), force)
    else:
        print(render(document(client, connection)), end="")
        if client == "claude-desktop":
            _note(cli, f"{_where(client)}; --write merges it into its file")
        else:
            _note(cli, f"{_where(client)}; --write merges it into ./{DEFAULT_FILES[client]}")
    _sign_in_note(cli, client, config, connection)


def _write(
    cli: CliState, client: FileClient, connection: Connection, path: Path, force: bool
) -> None:
    shown = display_path(path, Path.cwd())
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else None
        merged = merge(client, connection, existing, source=shown, force=force)
        if merged.outcome != "unchanged":
            write_atomically(path, merged.text, private=bool(connection.headers))
    except (OSError, UnicodeDecodeError) as exc:  # the adapter edge: the file system
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigFileError(f"{shown}: {reason}; nothing was written") from None
    _note(cli, f"{merged.outcome} '{connection.name}' in {shown}; {_where(client)}")


def _default_file(cli: CliState, client: FileClient) -> Path:
    if client == "claude-desktop":
        return claude_desktop_file(sys.platform, cli.settings.environ)
    return DEFAULT_FILES[client]


def _where(client: FileClient) -> str:
    return {
        "claude-code": "Claude Code reads .mcp.json at the project root (project scope)",
        "claude-desktop": "Claude Desktop reads claude_desktop_config.json when it starts",
        "cursor": "Cursor reads .cursor/mcp.json in a project, ~/.cursor/mcp.json everywhere",
        "vscode": "VS Code reads .vscode/mcp.json in a workspace (or MCP: Open User Configuration)",
    }[client]


def _sign_in_note(
    cli: CliState, client: Client, config: ServerConfig, connection: Connection
) -> None:
    if connection.headers:
        _note(cli, "the entry holds a bearer token: keep it out of version control")
    elif config.oauth.required and client == "inspector":
        _note(
            cli,
            f"'{connection.name}' requires OAuth: the Inspector's CLI signs in through the browser;"
            " --token --user NAME puts a token on the command line instead",
        )
    elif config.oauth.required:
        _note(cli, f"'{connection.name}' requires OAuth: the client signs in on first use")


def _chatgpt(cli: CliState, server: str, config: ServerConfig) -> None:
    settings = cli.settings
    setup = ChatGptSetup(
        name=server,
        description=config.description or f"MCP server '{server}'",
        url=settings.endpoint_for(server),
        oauth_base=settings.oauth_base,
        openapi_url=f"{settings.public_url}/api/v1/mcp/{server}/openapi.json",
        oauth_required=config.oauth.required,
        scopes=config.oauth.scopes,
    )
    print("\n".join(chatgpt_steps(setup)))
    if not settings.public_url.startswith("https://") or _loopback(settings.public_url):
        _note(
            cli,
            f"ChatGPT connects from OpenAI's servers: {settings.public_url} must become a public"
            " https:// URL (gateway.public_url in atrium.yaml)",
        )


def _loopback(url: str) -> bool:
    return is_this_machine(urlsplit(url).hostname or "")


def _note(cli: CliState, text: str) -> None:
    cli.err.print(f"note: {text}", highlight=False, markup=False)
