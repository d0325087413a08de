"""The Connect section of a server's page: what ``atrium connect`` prints for each client, and
the install links of the two editors that have them.

* Cursor (cursor.com/docs/mcp/install-links): ``cursor://anysphere.cursor-deeplink/mcp/install
  ?name=NAME&config=BASE64`` where the config is the server's ``mcp.json`` entry as JSON.
* VS Code (code.visualstudio.com/docs/copilot/customization/mcp-servers): ``vscode:mcp/install
  ?<URL-encoded JSON>``, the entry with its ``name``.
* Claude Code: ``claude mcp add --transport http NAME URL`` (code.claude.com/docs/en/mcp).
"""

from __future__ import annotations

import base64
import json
import shlex
import sys
from dataclasses import dataclass
from urllib.parse import quote

from atrium.client.configs import (
    ChatGptSetup,
    Connection,
    atrium_command,
    chatgpt_steps,
    document,
    entry,
    render,
)
from atrium.registry.schema import ServerConfig
from atrium.settings import Settings


@dataclass(frozen=True)
class ConnectInfo:
    url: str
    cursor_link: str
    vscode_link: str
    claude_code: str
    claude_desktop: str
    cursor_json: str
    vscode_json: str
    chatgpt: str


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def cursor_link(connection: Connection) -> str:
    config = base64.b64encode(_json(entry("cursor", connection)).encode()).decode("ascii")
    return (
        "cursor://anysphere.cursor-deeplink/mcp/install"
        f"?name={quote(connection.name, safe='')}&config={quote(config, safe='')}"
    )


def vscode_link(connection: Connection) -> str:
    config = {"name": connection.name, **entry("vscode", connection)}
    return "vscode:mcp/install?" + quote(_json(config), safe="")


def connect_info(settings: Settings, name: str, config: ServerConfig) -> ConnectInfo:
    url = settings.endpoint_for(name)
    connection = Connection(name, url, {}, atrium_command(sys.executable, sys.platform))
    setup = ChatGptSetup(
        name=name,
        description=config.description or f"MCP server '{name}'",
        url=url,
        oauth_base=settings.oauth_base,
        openapi_url=f"{settings.public_url}/api/v1/mcp/{name}/openapi.json",
        oauth_required=config.oauth.required,
        scopes=config.oauth.scopes,
    )
    return ConnectInfo(
        url=url,
        cursor_link=cursor_link(connection),
        vscode_link=vscode_link(connection),
        claude_code=f"claude mcp add --transport http {shlex.quote(name)} {shlex.quote(url)}",
        claude_desktop=render(document("claude-desktop", connection)),
        cursor_json=render(document("cursor", connection)),
        vscode_json=render(document("vscode", connection)),
        chatgpt="\n".join(chatgpt_steps(setup)),
    )
