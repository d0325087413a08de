"""What the tests of the tool loop and the AI service share: a project whose agent runs on a
provider fake (``tests.ai.providers_fake``), with real MCP tools, and a real store.

The tools are the npm ``@modelcontextprotocol/server-everything`` over stdio, named in an
``.mcp.json`` of ``ai.mcp_configs`` (``auto_discover: false``, so no gateway is needed): it has
``echo``, a tool that runs for ``duration`` seconds (``trigger-long-running-operation``) and
an image tool. The server runs in the project folder, so a test can tell its own server's
process apart (``stdio_servers``) and see it end.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from atrium.ai.discovery import RunAs
from atrium.ai.run_events import RunEvent, RunStarted
from atrium.ai.service import AgentService
from atrium.settings import Settings, load_settings
from atrium.store import Store
from tests.ai.fake_script import ProviderFake
from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config

REPO = Path(__file__).resolve().parents[2]
EVERYTHING = REPO / ".cache/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
ECHO = "mcp__everything__echo"
SLOW = "mcp__everything__trigger-long-running-operation"
IMAGE = "mcp__everything__get-tiny-image"
# An admin: the extra .mcp.json servers the tests use are offered to admins only (discovery).
ALICE = RunAs("alice", frozenset({"admin"}))

E = TypeVar("E")


def need_everything() -> None:
    """Skip without node or the npm server (``scripts/npm-deps``), fail so in CI."""
    if shutil.which("node") is None or not EVERYTHING.exists():
        message = "@modelcontextprotocol/server-everything is missing: run scripts/npm-deps"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def ai_project(
    project: Path,
    fake: ProviderFake,
    *,
    tools: bool = True,
    allowed_tools: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
    **ai: Any,
) -> Settings:
    """``project`` with the agent ``helper`` on ``fake`` and, with ``tools``, the everything
    server; ``ai`` are more keys of ``ai:`` (``max_tool_rounds``, ``timeouts`` ...)."""
    configs: list[str] = []
    if tools:
        need_everything()
        server = {"command": "node", "args": [str(EVERYTHING), "stdio"], "cwd": str(project)}
        (project / ".mcp.json").write_text(json.dumps({"mcpServers": {"everything": server}}))
        configs.append(".mcp.json")
    write_ai_config(project, fake, auto_discover=False, mcp_configs=configs, **ai)
    write_agent(project, "helper", allowed_tools=allowed_tools)
    return load_settings(project, environ={KEY_VARIABLE: "test-key", **(environ or {})})


@asynccontextmanager
async def service_of(settings: Settings) -> AsyncIterator[AgentService]:
    """The AI service of ``settings``'s project on its real store (SQLite unless set)."""
    async with await Store.open(settings) as store:
        yield AgentService(settings, store)


async def run(
    service: AgentService,
    message: str,
    *,
    agent: str = "helper",
    run_as: RunAs = ALICE,
    conversation_id: str | None = None,
) -> list[RunEvent]:
    """Every event of one run, read to its end."""
    async with service.start(agent, message, run_as, conversation_id) as events:
        return [event async for event in events]


async def refused(
    service: AgentService,
    message: str,
    *,
    agent: str = "helper",
    run_as: RunAs = ALICE,
    conversation_id: str | None = None,
) -> None:
    """Enter ``start``, which must raise: what a user must fix is told before any event."""
    async with service.start(agent, message, run_as, conversation_id):
        pytest.fail("start gave an event stream")


def conversation_of(events: Sequence[RunEvent]) -> str:
    """The id of the conversation a run's ``started`` event names."""
    started = events[0]
    assert isinstance(started, RunStarted), started
    return started.conversation_id


def of_type(events: Sequence[object], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


def request_text(body: Any) -> str:
    """A recorded request body as one string, to look for what the model was sent."""
    return json.dumps(body, ensure_ascii=False)


def stdio_servers(project: Path) -> list[int]:
    """The process ids of the everything servers running in ``project`` (their cwd)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            in_project = os.readlink(entry / "cwd") == str(project)
            command = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if in_project and b"server-everything" in command:
            found.append(int(entry.name))
    return found
