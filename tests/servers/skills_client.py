"""Clients of the ``marketplace`` server for its skills tests: in-process over real HTTP with
the official SDK client, each caller vouched for as the gateway would (ada, bob, ...), on a real
project with its SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, TextContent

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.marketplace import create_server
from atrium.settings import Settings
from tests.servers.helpers import serving
from tests.trust import vouched_client

WRITE = frozenset({"user", "tools:read", "tools:write"})
ADMIN = WRITE | {"admin"}
DESCRIPTION = "Extract text and tables from PDF files. Use when a task involves PDF documents."


def skill_md(
    name: str = "pdf-tools", body: str = "Run `pdftotext` on the file.\n", **front: str
) -> str:
    header = {"name": name, "description": DESCRIPTION, **front}
    lines = "".join(f"{key}: {value}\n" for key, value in header.items())
    return f"---\n{lines}---\n{body}"


def alias_bomb() -> str:
    """A SKILL.md whose name is ten levels of ten aliases each: 10^10 strings once expanded.
    Its first anchor is on line 2."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 10)]
    return "---\n" + "\n".join(lines) + f"\nname: *a9\ndescription: {DESCRIPTION}\n---\nHi.\n"


class Users:
    """Clients of one marketplace server, one per subject."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url, self.settings = url, settings

    @asynccontextmanager
    async def client(
        self, subject: str | None = "ada", scopes: frozenset[str] = WRITE
    ) -> AsyncIterator[Client]:
        state = self.settings.state_dir
        async with vouched_client(
            self.url, state, "marketplace", subject=subject, scopes=scopes
        ) as client:
            yield client

    async def call(
        self, tool: str, subject: str | None = "ada", scopes: frozenset[str] = WRITE, **args: Any
    ) -> CallToolResult:
        async with self.client(subject, scopes) as client:
            return await client.call_tool(tool, args)


@asynccontextmanager
async def serving_users(project: Settings) -> AsyncIterator[Users]:
    """The marketplace of ``project`` served on loopback, checking the gateway's assertions."""
    verifier = AssertionVerifier.load(project.state_dir / PUBLIC_FILE, "marketplace")
    async with serving(create_server(project), verifier) as url:
        yield Users(f"{url}/mcp", project)


def said(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def refusal(result: CallToolResult) -> str:
    """The message of a tool error, without the SDK's "Error executing tool <name>: "."""
    assert result.is_error, said(result)
    return said(result).split(": ", 1)[1]


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, said(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content
