"""What each MCP client needs to reach a hosted server, and merging it into the client's file.

The formats, from each client's documentation:

* Claude Code (code.claude.com/docs/en/mcp): ``.mcp.json`` at the project root is the
  project scope, ``{"mcpServers": {name: {"type": "http", "url": ..., "headers": {...}}}}``.
* VS Code (code.visualstudio.com/docs/copilot/reference/mcp-configuration): ``.vscode/mcp.json``,
  ``{"servers": {name: {"type": "http", "url": ..., "headers": {...}}}, "inputs": [...]}``.
* Cursor (cursor.com/docs/mcp): ``.cursor/mcp.json`` in a project, ``~/.cursor/mcp.json`` for
  every project, ``{"mcpServers": {name: {"url": ..., "headers": {...}}}}``.
* Claude Desktop (modelcontextprotocol.io/docs/develop/connect-local-servers): starts local
  stdio servers only, from ``claude_desktop_config.json`` in its folder of the OS,
  ``{"mcpServers": {name: {"command": ..., "args": [...]}}}``: a hosted server is reached
  through ``atrium bridge <url>``, which signs in by itself (OAuth and DPoP).
* MCP Inspector: no file; its CLI takes the URL, ``--transport http`` and ``--header
  "Name: Value"`` (``npx @modelcontextprotocol/inspector --cli --help``).

The others sign in by themselves when a server answers 401 with protected resource metadata
(MCP spec, "Authorization"), so an entry carries headers only when a token is embedded on
purpose.

Merging keeps every other key and entry of the file, refuses to replace a different entry of
the same name unless forced, and never rewrites a file it cannot parse: VS Code accepts comments
in ``mcp.json``, which plain JSON cannot keep, so such a file is left for the user to edit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from atrium.errors import EXIT_CONFIG, AtriumError

Client = Literal["claude-code", "claude-desktop", "cursor", "vscode", "chatgpt", "inspector"]
FileClient = Literal["claude-code", "claude-desktop", "cursor", "vscode"]
ProjectClient = Literal["claude-code", "cursor", "vscode"]
CLIENTS: tuple[Client, ...] = get_args(Client)
FILE_CLIENTS: tuple[FileClient, ...] = get_args(FileClient)

# Where --write puts the entry by default, relative to the folder the command runs in.
DEFAULT_FILES: Mapping[ProjectClient, Path] = {
    "claude-code": Path(".mcp.json"),
    "cursor": Path(".cursor/mcp.json"),
    "vscode": Path(".vscode/mcp.json"),
}
SECTIONS: Mapping[FileClient, str] = {
    "claude-code": "mcpServers",
    "claude-desktop": "mcpServers",
    "cursor": "mcpServers",
    "vscode": "servers",
}
INSPECTOR = "npx @modelcontextprotocol/inspector"

Outcome = Literal["added", "replaced", "unchanged"]


class ConfigFileError(AtriumError):
    """A client's file cannot take the entry (not JSON, wrong shape, or the name is taken)."""

    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class Connection:
    """One hosted server as a client reaches it: entry name, public URL, extra headers, and
    the command that runs ``atrium`` (for a client that reaches it through ``atrium bridge``)."""

    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    atrium: tuple[str, ...] = ("atrium",)


@dataclass(frozen=True)
class Merged:
    text: str
    outcome: Outcome


def is_file_client(client: Client) -> bool:
    return client in FILE_CLIENTS


def entry(client: FileClient, connection: Connection) -> dict[str, Any]:
    """The server's entry in the client's file (Cursor infers the transport from ``url``)."""
    if client == "claude-desktop":
        return bridge_entry(connection)
    found: dict[str, Any] = {} if client == "cursor" else {"type": "http"}
    found["url"] = connection.url
    if connection.headers:
        found["headers"] = dict(connection.headers)
    return found


def bridge_entry(connection: Connection) -> dict[str, Any]:
    """Claude Desktop starts local servers only (stdio, ``claude_desktop_config.json``): it
    reaches a hosted one through ``atrium bridge <url>``, which signs in with OAuth itself."""
    command, *leading = connection.atrium
    return {"command": command, "args": [*leading, "bridge", connection.url]}


def claude_desktop_file(platform: str, environ: Mapping[str, str]) -> Path:
    """Where Claude Desktop keeps its configuration on this operating system
    (modelcontextprotocol.io/docs/develop/connect-local-servers)."""
    if platform.startswith("win"):
        return _folder(environ, "APPDATA") / "Claude" / "claude_desktop_config.json"
    home = _folder(environ, "HOME")
    if platform == "darwin":
        return home / "Library/Application Support/Claude/claude_desktop_config.json"
    return home / ".config/Claude/claude_desktop_config.json"


def _folder(environ: Mapping[str, str], variable: str) -> Path:
    value = environ.get(variable)
    if not value:
        raise ConfigFileError(
            f"environment variable {variable} is not set, so Claude Desktop's file cannot be"
            " found: name it with --file"
        )
    return Path(value)


def atrium_command(executable: str, platform: str) -> tuple[str, ...]:
    """This installation's ``atrium``, by absolute path: a desktop app starts it without a
    shell or this PATH. The console script beside the interpreter, else ``python -m atrium``."""
    interpreter = Path(executable).absolute()
    script = interpreter.with_name("atrium.exe" if platform.startswith("win") else "atrium")
    return (str(script),) if script.is_file() else (str(interpreter), "-m", "atrium")


def document(client: FileClient, connection: Connection) -> dict[str, Any]:
    """A whole file holding only this entry."""
    return {SECTIONS[client]: {connection.name: entry(client, connection)}}


def render(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def merge(
    client: FileClient, connection: Connection, existing: str | None, *, source: str, force: bool
) -> Merged:
    """The file's new text with the entry added; ``existing`` is its text (``None``: no file).

    ``source`` names the file in errors. Raises ``ConfigFileError`` rather than lose anything.
    """
    data = _parse(existing, source)
    section_name = SECTIONS[client]
    section = data.setdefault(section_name, {})
    if not isinstance(section, dict):
        raise ConfigFileError(
            f"{source}: '{section_name}' is a {type(section).__name__}, not an object;"
            " it was left unchanged"
        )
    wanted = entry(client, connection)
    current = section.get(connection.name)
    if current == wanted:
        return Merged(render(data), "unchanged")
    if current is not None and not force:
        raise ConfigFileError(
            f"{source}: {section_name}.{connection.name} exists with other settings;"
            " pass --force to replace it, or edit the file"
        )
    section[connection.name] = wanted
    return Merged(render(data), "added" if current is None else "replaced")


def _parse(existing: str | None, source: str) -> dict[str, Any]:
    if existing is None or not existing.strip():
        return {}
    try:
        data = json.loads(existing)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            f"{source}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); it was left"
            " unchanged. A file with comments cannot be merged: run without --write and add"
            " the printed entry by hand"
        ) from None
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{source}: the top level is a {type(data).__name__}, not an object;"
            " it was left unchanged"
        )
    return data


def write_atomically(path: Path, text: str, *, private: bool) -> None:
    """Replace ``path`` in one step (a crash leaves the old file or the new one, never half).

    An existing file keeps its permissions; a new one is readable by its owner only when
    ``private`` (it holds a token), else by everyone, as a file meant to be shared.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600 if private else 0o644
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", text=True)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def inspector_command(connection: Connection) -> str:
    """A shell command line that lists the server's tools with the Inspector's CLI.

    ``--header`` takes several values, so it comes last where nothing can be mistaken for one.
    """
    words = [connection.url, "--transport", "http", "--method", "tools/list"]
    for name, value in connection.headers.items():
        words += ["--header", f"{name}: {value}"]
    return f"{INSPECTOR} --cli " + " ".join(shlex.quote(word) for word in words)


@dataclass(frozen=True)
class ChatGptSetup:
    """What the ChatGPT steps name: the server, its URLs, and whether it needs OAuth."""

    name: str
    description: str
    url: str
    oauth_base: str
    openapi_url: str
    oauth_required: bool
    scopes: tuple[str, ...] = ()


def chatgpt_steps(setup: ChatGptSetup) -> list[str]:
    """ChatGPT has no configuration file: the steps of its connector form (developer mode,
    developers.openai.com/apps-sdk/deploy/connect-chatgpt), then of a custom GPT's actions,
    which read the server's tools as OpenAPI."""
    return [
        f"Connect ChatGPT to '{setup.name}' (the labels vary a little between ChatGPT plans).",
        "",
        *_connector_steps(setup),
        "",
        *_action_steps(setup),
    ]


def _oauth_fields(setup: ChatGptSetup, *, registration: bool) -> list[str]:
    scopes = " ".join(setup.scopes) or "(leave empty: the user's role decides)"
    return [
        f"     Authorization URL:  {setup.oauth_base}/authorize",
        f"     Token URL:          {setup.oauth_base}/token",
        *([f"     Registration URL:   {setup.oauth_base}/register"] if registration else []),
        f"     Scopes:             {scopes}",
    ]


def _connector_steps(setup: ChatGptSetup) -> list[str]:
    lines = [
        "As a connector:",
        "  1. Settings > Apps & Connectors > Advanced settings: turn on Developer mode.",
        "  2. Settings > Apps & Connectors > Create, and fill in:",
        f"     Name:               {setup.name}",
        f"     Description:        {setup.description}",
        f"     MCP Server URL:     {setup.url}",
        f"     Authentication:     {'OAuth' if setup.oauth_required else 'No authentication'}",
    ]
    if not setup.oauth_required:
        return lines
    return [
        *lines,
        "  3. ChatGPT registers itself and opens Atrium's sign-in page. If it asks for",
        "     OAuth settings instead, give it:",
        *_oauth_fields(setup, registration=True),
    ]


def _action_steps(setup: ChatGptSetup) -> list[str]:
    lines = [
        "Or as the actions of a custom GPT (Explore GPTs > Create > Configure):",
        "  1. Create new action > Import from URL:",
        f"     {setup.openapi_url}",
    ]
    if not setup.oauth_required:
        return [*lines, "  2. Authentication: None."]
    scopes = "".join(f" --scope {shlex.quote(scope)}" for scope in setup.scopes)
    return [
        *lines,
        "  2. Authentication: OAuth, with a client made for the GPT (it prints the secret once):",
        f"     atrium admin clients create chatgpt-{setup.name} --redirect-uri CALLBACK{scopes}",
        "     where CALLBACK is the callback URL ChatGPT shows under the action; then give",
        "     ChatGPT its Client ID and Client Secret, and:",
        *_oauth_fields(setup, registration=False),
        "     Token exchange method: Basic authorization header",
    ]
