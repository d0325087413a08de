"""The connection manager against real servers, all in one manager at once: the npm
everything server over stdio and over its legacy HTTP+SSE transport, ``mcp-server-time`` over
stdio, and a server Atrium hosts, through the gateway with an OAuth token; and what happens when
a connection drops under it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from mcp.types import TextContent

from atrium.auth.operator import operator_token
from atrium.client.manager import McpManager, ToolCallBegin, ToolCallEnd, ToolCallEvent
from atrium.client.mcpjson import ServerSpec, parse_mcp_json
from atrium.client.sources import registry_specs
from atrium.registry.loader import load_registry
from atrium.settings import load_settings
from tests.e2e.instance import Instance, started_instance
from tests.polling import until, wait_until
from tests.processes import alive, free_port

REPO = Path(__file__).resolve().parents[2]
EVERYTHING = REPO / ".cache/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"


def _need(path: Path, what: str) -> None:
    if shutil.which("node") is None or not path.exists():
        message = f"{what} is missing: run scripts/npm-deps (and make install)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def sse_everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``server-everything sse`` on a free port: the legacy HTTP+SSE transport."""
    _need(EVERYTHING, "@modelcontextprotocol/server-everything")
    port = free_port()
    log = (tmp_path_factory.mktemp("sse") / "everything.log").open("w")
    process = subprocess.Popen(
        ["node", str(EVERYTHING), "sse"],
        env={**os.environ, "PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: "running on port" in Path(log.name).read_text(),
            timeout_s=30,
            what="the SSE everything server",
        )
        yield f"http://127.0.0.1:{port}/sse"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    with started_instance(tmp_path_factory.mktemp("atrium")) as instance:
        yield instance


def _registry(instance: Instance) -> list[ServerSpec]:
    settings = load_settings(instance.project, instance.env)
    entries = [e for e in load_registry(settings) if e.name == "atrium"]
    return registry_specs(settings, entries, lambda server: operator_token(settings, server))


def _stdio(tmp_path: Path) -> list[ServerSpec]:
    _need(EVERYTHING, "@modelcontextprotocol/server-everything")
    document = {
        "mcpServers": {
            "everything": {"command": "node", "args": [str(EVERYTHING), "stdio"]},
            "time": {"command": str(TIME_SERVER)},
            "flaky": {
                "command": sys.executable,
                "args": ["-m", "tests.client.flaky_server", str(tmp_path)],
                "cwd": str(REPO),
            },
        }
    }
    return parse_mcp_json(document, dict(os.environ))


def _text(result: object) -> str:
    content = getattr(result, "content", [])
    return " ".join(c.text for c in content if isinstance(c, TextContent))


def _every_kind(folder: Path, sse_everything: str, hosted: Instance) -> list[ServerSpec]:
    sse = parse_mcp_json({"mcpServers": {"legacy": {"type": "sse", "url": sse_everything}}}, {})
    return [*_stdio(folder), *sse, *_registry(hosted)]


@pytest.fixture
async def manager(
    tmp_path: Path, sse_everything: str, hosted: Instance
) -> AsyncIterator[McpManager]:
    """A manager of every kind of server, of the test's own: for a test that kills, cuts off or
    changes one of them."""
    specs = _every_kind(tmp_path, sse_everything, hosted)
    async with McpManager(specs, log_dir=tmp_path / "logs") as opened:
        yield opened


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(
    tmp_path_factory: pytest.TempPathFactory, sse_everything: str, hosted: Instance
) -> AsyncIterator[McpManager]:
    """The same, one for the tests that only list and call (their mistakes included), which
    change nothing on a server: starting five servers costs seconds a test. Those tests run on
    the module's event loop (``SHARED``), which the manager's connections belong to."""
    folder = tmp_path_factory.mktemp("shared-manager")
    async with McpManager(_every_kind(folder, sse_everything, hosted), log_dir=folder) as opened:
        yield opened


SHARED = pytest.mark.asyncio(loop_scope="module")


@SHARED
async def test_every_kind_of_server_in_one_manager(shared: McpManager) -> None:
    assert {s.name: s.error for s in shared.status()} == dict.fromkeys(
        ["everything", "time", "flaky", "legacy", "atrium"]
    )
    names = {tool.name for tool in await shared.tools()}

    for expected in [
        "mcp__everything__echo",
        "mcp__legacy__echo",
        "mcp__time__get_current_time",
        "mcp__flaky__record",
        "mcp__atrium__list_playbooks",
    ]:
        assert expected in names
    echo = await shared.call("mcp__everything__echo", {"message": "over stdio"})
    legacy = await shared.call("mcp__legacy__echo", '{"message": "over SSE"}')
    now = await shared.call("mcp__time__get_current_time", {"timezone": "Etc/UTC"})
    playbooks = await shared.call("mcp__atrium__list_playbooks", {})

    assert (echo.is_error, _text(echo)) == (False, "Echo: over stdio")
    assert (legacy.is_error, _text(legacy)) == (False, "Echo: over SSE")
    assert json.loads(_text(now))["timezone"] == "Etc/UTC"
    assert not playbooks.is_error, _text(playbooks)


@SHARED
async def test_resources_through_the_two_meta_tools(shared: McpManager) -> None:
    listed: list[dict[str, str]] = []
    cursor = None
    for _ in range(50):
        page = json.loads(_text(await shared.call("list_mcp_resources", {"cursor": cursor})))
        listed += page["resources"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    servers = {r["server"] for r in listed}
    assert {"everything", "legacy"} <= servers
    first = next(r for r in listed if r["server"] == "legacy" and "text" in r["mimeType"])

    read = await shared.call("read_mcp_resource", {"server": "legacy", "uri": first["uri"]})

    assert not read.is_error, _text(read)
    assert json.loads(_text(read))["contents"][0]["uri"] == first["uri"]
    only = json.loads(_text(await shared.call("list_mcp_resources", {"server": "time"})))
    assert only == {"resources": [], "nextCursor": None}


@pytest.mark.parametrize(
    ("name", "arguments", "words"),
    [
        ("list_mcp_resources", {"cursor": "not-ours"}, "not one list_mcp_resources returned"),
        ("list_mcp_resources", {"server": "nope"}, "unknown server 'nope'"),
        ("list_mcp_resources", {"page": 2}, "takes no argument 'page'"),
        ("read_mcp_resource", {"server": "legacy"}, "needs 'server' and 'uri'"),
        ("read_mcp_resource", {"server": 3, "uri": "x"}, "'server' must be a string"),
        ("read_mcp_resource", {"server": "legacy", "uri": "demo://nothing/here"}, "legacy"),
    ],
)
@SHARED
async def test_meta_tool_mistakes_are_error_results(
    shared: McpManager, name: str, arguments: dict[str, object], words: str
) -> None:
    result = await shared.call(name, arguments)

    assert result.is_error
    assert words in _text(result)


@SHARED
async def test_mistakes_come_back_as_error_results_with_events(shared: McpManager) -> None:
    events: list[ToolCallEvent] = []
    unsubscribe = shared.subscribe(events.append)
    bad_json = await shared.call("mcp__time__get_current_time", "{not json", call_id="c1")
    unknown = await shared.call("mcp__time__no_such_tool", {})
    tool_error = await shared.call("mcp__time__get_current_time", {"timezone": "Mars/Olympus"})
    unsubscribe()
    await shared.call("mcp__everything__echo", {"message": "unseen"})

    assert bad_json.is_error
    assert "not valid JSON" in _text(bad_json)
    assert (unknown.is_error, _text(unknown)) == (True, "unknown tool 'mcp__time__no_such_tool'")
    assert tool_error.is_error
    assert [type(e) for e in events] == [ToolCallBegin, ToolCallEnd] * 3
    begin, end = events[0], events[1]
    assert isinstance(end, ToolCallEnd)
    assert (begin.call_id, end.call_id) == ("c1", "c1")
    assert (end.server, end.tool) == ("time", "get_current_time")
    assert end.error is not None
    assert "not valid JSON" in end.error
    assert end.duration_ms >= 0
    last = events[-1]
    assert isinstance(last, ToolCallEnd)
    assert (last.server, last.ok) == ("time", False)


def _children(name: str) -> list[int]:
    """Our own child processes whose command line names ``name`` (other tests run theirs)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and name.encode() in cmdline:
            found.append(int(stat.parent.name))
    return found


async def test_a_killed_stdio_child_is_reconnected_on_the_next_call(
    tmp_path: Path, sse_everything: str, hosted: Instance
) -> None:
    others = set(_children("mcp-server-time"))  # the shared manager's
    specs = _every_kind(tmp_path, sse_everything, hosted)
    async with McpManager(specs, log_dir=tmp_path / "logs") as manager:
        first = await manager.call("mcp__time__get_current_time", {"timezone": "Etc/UTC"})
        (pid,) = set(_children("mcp-server-time")) - others
        os.kill(pid, signal.SIGKILL)
        await until(lambda: not alive(pid), what="the time server to die")

        second = await manager.call("mcp__time__get_current_time", {"timezone": "Etc/UTC"})
        now = set(_children("mcp-server-time")) - others

    assert not first.is_error
    assert not second.is_error, _text(second)
    assert len(now) == 1
    assert pid not in now


async def test_a_call_cut_off_midway_runs_twice_only_when_idempotent(
    manager: McpManager, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    (tmp_path / "die-once").touch()
    cut = await manager.call("mcp__flaky__record", {"what": "once"})
    after = await manager.call("mcp__flaky__record", {"what": "next"})
    (tmp_path / "die-once").touch()
    retried = await manager.call("mcp__flaky__record_idempotent", {"what": "twice"})

    assert cut.is_error
    assert "not sent again" in _text(cut)
    assert not after.is_error
    assert not retried.is_error, _text(retried)
    assert calls.read_text().split() == ["once", "next", "twice", "twice"]


async def test_a_tool_added_at_run_time_is_listed(manager: McpManager) -> None:
    grown = await manager.call("mcp__flaky__grow", {"name": "fresh"})

    assert not grown.is_error, _text(grown)
    await until(lambda: _named(manager, "mcp__flaky__fresh"), what="the new tool in the listing")


async def _named(manager: McpManager, name: str) -> bool:
    return name in {tool.name for tool in await manager.tools()}


async def test_a_server_that_fails_does_not_hold_up_the_others(tmp_path: Path) -> None:
    document = {
        "mcpServers": {
            "time": {"command": str(TIME_SERVER)},
            "missing": {"command": str(tmp_path / "no-such-program")},
            "refused": {"type": "http", "url": f"http://127.0.0.1:{free_port()}/mcp"},
        }
    }
    async with McpManager(parse_mcp_json(document, {}), log_dir=tmp_path) as manager:
        errors = {s.name: s.error for s in manager.status()}
        down = await manager.call("mcp__missing__anything", {})
        up = await manager.call("mcp__time__get_current_time", {"timezone": "Etc/UTC"})

    assert errors["time"] is None
    assert errors["missing"] is not None
    assert "cannot start the command" in errors["missing"]
    assert errors["refused"] is not None
    assert "refused" in errors["refused"]
    assert down.is_error
    assert not up.is_error


async def test_a_restarted_gateway_is_reconnected(tmp_path: Path, hosted: Instance) -> None:
    # The module's Atrium, restarted on its port: the tests after this one find it running.
    specs = _registry(hosted)
    async with McpManager(specs, log_dir=tmp_path / "logs") as manager:
        before = await manager.call("mcp__atrium__list_playbooks", {})
        await asyncio.to_thread(hosted.restart)
        after = await manager.call("mcp__atrium__list_playbooks", {})

    assert not before.is_error, _text(before)
    assert not after.is_error, _text(after)


async def test_a_server_that_is_down_is_tried_again_only_after_a_backoff(tmp_path: Path) -> None:
    port = free_port()
    document = {"mcpServers": {"later": {"type": "http", "url": f"http://127.0.0.1:{port}/mcp"}}}
    async with McpManager(parse_mcp_json(document, {}), log_dir=tmp_path) as manager:
        link = manager.links["later"]
        first = await manager.call("mcp__later__anything", {})
        listed = await manager.tools()  # within the backoff: no new attempt
        waiting = await manager.call("list_mcp_resources", {"server": "later"})

    assert listed == []
    assert first.is_error
    assert waiting.is_error
    assert "next try in" in _text(waiting)
    assert link.error is not None
    assert "refused" in link.error


def _serve_everything_http(port: int, log: Path) -> subprocess.Popen[bytes]:
    """``server-everything streamableHttp``: an ``initialize``-era server with sessions."""
    ready = f"listening on port {port}"
    seen = log.read_text().count(ready) if log.exists() else 0
    with log.open("a") as out:
        process = subprocess.Popen(
            ["node", str(EVERYTHING), "streamableHttp"],
            env={**os.environ, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_until(
        lambda: log.read_text().count(ready) > seen,
        timeout_s=30,
        what="the streamable HTTP everything server",
    )
    return process


async def test_a_session_the_server_forgot_is_opened_again_and_the_call_sent(
    tmp_path: Path,
) -> None:
    _need(EVERYTHING, "@modelcontextprotocol/server-everything")
    port, log = free_port(), tmp_path / "everything.log"
    document = {"mcpServers": {"old": {"type": "http", "url": f"http://127.0.0.1:{port}/mcp"}}}
    process = _serve_everything_http(port, log)
    try:
        async with McpManager(parse_mcp_json(document, {}), log_dir=tmp_path) as manager:
            before = await manager.call("mcp__old__echo", {"message": "one"})
            process.terminate()
            process.wait(10)
            process = _serve_everything_http(port, log)  # a new process knows no session
            after = await manager.call("mcp__old__echo", {"message": "two"})
    finally:
        process.terminate()
        process.wait(10)

    assert (before.is_error, _text(before)) == (False, "Echo: one")
    assert (after.is_error, _text(after)) == (False, "Echo: two")
    assert log.read_text().count("Session initialized") == 2


async def test_two_servers_whose_tools_clash_say_so_in_every_call(tmp_path: Path) -> None:
    # "a.b" and "a_b" both become mcp__a_b__...: no silent overwrite, the reason is told.
    document = {"mcpServers": {name: {"command": str(TIME_SERVER)} for name in ("a.b", "a_b")}}
    async with McpManager(parse_mcp_json(document, {}), log_dir=tmp_path) as manager:
        result = await manager.call("mcp__a_b__get_current_time", {"timezone": "Etc/UTC"})

    assert result.is_error
    assert "server 'a.b'" in _text(result)
    assert "server 'a_b'" in _text(result)
    assert "both become 'mcp__a_b__get_current_time'" in _text(result)
