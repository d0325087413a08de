"""End to end: the stdio bridge as a real process around real third-party stdio servers.

Each bridge runs as ``python -m atrium.bridge`` (as the supervisor starts it) on an
ephemeral loopback port; clients are the official SDK's, over Streamable HTTP, in both protocol
eras: ``mode="legacy"`` runs the ``initialize`` handshake (2025-11-25), ``mode="auto"`` finds
``server/discover`` and speaks 2026-07-28. One bridge per server serves a whole module; the
lifecycle tests start their own, since they end them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from atrium.auth.assertion import PUBLIC_FILE, rotate_caller_keys
from tests.polling import wait_until
from tests.processes import free_port
from tests.trust import assertion, vouched_client

REPO = Path(__file__).resolve().parents[2]
TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"
EVERYTHING_SERVER = REPO / ".cache/npm/node_modules/.bin/mcp-server-everything"
HEALTH_DEADLINE_S = 60.0  # node starting cold on a busy CI machine
EXIT_DEADLINE_S = 30.0  # stop sequence: stdin close, 2 s, SIGTERM, 2 s, SIGKILL, plus slack
ERAS = ["legacy", "auto"]  # the initialize era, and 2026-07-28 found by server/discover


@dataclass
class Bridge:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def wait_healthy(self) -> dict[str, Any]:
        def healthy() -> dict[str, Any] | None:
            if self.process.poll() is not None:
                pytest.fail(f"the bridge exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                status, body = self.health()
            except OSError:  # not listening yet
                return None
            return body if status == 200 else None

        return wait_until(
            healthy,
            what="the bridge to be healthy",
            timeout_s=HEALTH_DEADLINE_S,
            interval=0.1,
            detail=self.log_text,
        )

    def wait_exit(self, seconds: float) -> int:
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the bridge still runs after {seconds} s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(EXIT_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_bridge(folder: Path, name: str, command: list[str], *options: str) -> Bridge:
    port = free_port()
    log_path = folder / f"mcp-{name}.log"
    log = log_path.open("ab")
    argv = [sys.executable, "-m", "atrium.bridge", "--name", name, "--port", str(port)]
    if "--caller-keys" not in options:
        argv.append("--unauthenticated")  # these tests speak to the bridge itself
    process = subprocess.Popen(
        [*argv, *options, "--", *command], stdout=log, stderr=subprocess.STDOUT
    )
    return Bridge(process, port, log_path, log)


def wait_gone(pid: int, seconds: float = EXIT_DEADLINE_S) -> None:
    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    try:
        wait_until(gone, what=f"child {pid} to end after its bridge stopped", timeout_s=seconds)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)  # leave nothing behind, then fail
        raise


@pytest.fixture(scope="module")
def time_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    bridge = start_bridge(tmp_path_factory.mktemp("time"), "time", [str(TIME_SERVER)])
    try:
        bridge.wait_healthy()
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture(scope="module")
def everything_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    if shutil.which("node") is None or not EVERYTHING_SERVER.exists():
        reason = "node or @modelcontextprotocol/server-everything is missing: run scripts/npm-deps"
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    bridge = start_bridge(
        tmp_path_factory.mktemp("everything"), "everything", [str(EVERYTHING_SERVER)]
    )
    try:
        bridge.wait_healthy()
        yield bridge
    finally:
        bridge.stop()


def child_directly() -> Client:
    return Client(StdioServerParameters(command=str(TIME_SERVER)), mode="legacy")


# --- mcp-server-time (PyPI) -------------------------------------------------------------------


async def test_the_time_servers_tool_is_listed_and_called_through_the_bridge(
    time_bridge: Bridge,
) -> None:
    async with Client(time_bridge.url) as client:
        tools = await client.list_tools()
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})

    assert "get_current_time" in {tool.name for tool in tools.tools}
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["timezone"] == "UTC"


@pytest.mark.parametrize("era", ERAS)
async def test_a_tool_error_result_passes_through_unchanged(time_bridge: Bridge, era: str) -> None:
    arguments = {"timezone": "Mars/Olympus_Mons"}
    async with child_directly() as child:
        direct = await child.call_tool("get_current_time", arguments)
    async with Client(time_bridge.url, mode=era) as client:
        bridged = await client.call_tool("get_current_time", arguments)

    assert bridged.is_error is True
    assert bridged.content == direct.content


@pytest.mark.parametrize("era", ERAS)
async def test_a_json_rpc_error_keeps_its_code_message_and_data(
    time_bridge: Bridge, era: str
) -> None:
    async with child_directly() as child:
        with pytest.raises(MCPError) as direct:
            await child.read_resource("time://no-such-resource")
    async with Client(time_bridge.url, mode=era) as client:
        with pytest.raises(MCPError) as bridged:
            await client.read_resource("time://no-such-resource")

    assert bridged.value.error == direct.value.error


# --- both protocol eras on /mcp ---------------------------------------------------------------


async def test_a_2026_07_28_request_is_answered_without_a_session(time_bridge: Bridge) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                types.PROTOCOL_VERSION_META_KEY: "2026-07-28",
                types.CLIENT_CAPABILITIES_META_KEY: {},
            }
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/list",
    }
    async with httpx2.AsyncClient() as http:
        response = await http.post(time_bridge.url, json=body, headers=headers)

    assert response.status_code == 200
    assert "mcp-session-id" not in response.headers
    result = response.json()["result"]
    assert "get_current_time" in {tool["name"] for tool in result["tools"]}
    assert result["resultType"] == "complete"
    assert result["_meta"][types.SERVER_INFO_META_KEY]["name"] == "mcp-time"


async def test_an_initialize_era_session_carries_the_childs_identity(time_bridge: Bridge) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as http:
        response = await http.post(time_bridge.url, json=body, headers=headers)
        session_id = response.headers.get("mcp-session-id")
        if session_id is not None:
            await http.delete(time_bridge.url, headers={"Mcp-Session-Id": session_id})
    async with Client(time_bridge.url, mode="legacy") as client:
        version = client.protocol_version
        info = client.server_info
        tools = await client.list_tools()
    async with child_directly() as child:
        child_info = child.server_info

    assert response.status_code == 200
    assert session_id
    assert version == "2025-11-25"
    assert "get_current_time" in {tool.name for tool in tools.tools}
    assert info == child_info


# --- @modelcontextprotocol/server-everything (npm, stdio) -------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_echo_answers_through_the_bridge(everything_bridge: Bridge, era: str) -> None:
    async with Client(everything_bridge.url, mode=era) as client:
        tools = await client.list_tools()
        result = await client.call_tool("echo", {"message": "hello, bridge"})

    assert "echo" in {tool.name for tool in tools.tools}
    assert result.is_error is False
    assert isinstance(result.content[0], types.TextContent)
    assert "hello, bridge" in result.content[0].text


@pytest.mark.parametrize("era", ERAS)
async def test_progress_of_a_long_running_tool_reaches_the_caller(
    everything_bridge: Bridge, era: str
) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with Client(everything_bridge.url, mode=era) as client:
        result = await client.call_tool(
            "trigger-long-running-operation",
            {"duration": 0.6, "steps": 3},
            progress_callback=on_progress,
        )

    assert result.is_error is False
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("era", ERAS)
async def test_resources_are_listed_and_read(everything_bridge: Bridge, era: str) -> None:
    async with Client(everything_bridge.url, mode=era) as client:
        listing = await client.list_resources()
        uri = listing.resources[0].uri
        read = await client.read_resource(uri)
        templates = await client.list_resource_templates()

    assert read.contents[0].uri == uri
    assert templates.resource_templates


@pytest.mark.parametrize("era", ERAS)
async def test_a_prompt_is_listed_and_filled_with_arguments(
    everything_bridge: Bridge, era: str
) -> None:
    async with Client(everything_bridge.url, mode=era) as client:
        prompts = await client.list_prompts()
        prompt = await client.get_prompt("args-prompt", {"city": "Lisbon", "state": "Estremadura"})

    assert "args-prompt" in {p.name for p in prompts.prompts}
    text = prompt.messages[0].content
    assert isinstance(text, types.TextContent)
    assert "Lisbon" in text.text
    assert "Estremadura" in text.text


async def test_a_subscribed_session_gets_resource_updates_and_log_messages(
    everything_bridge: Bridge,
) -> None:
    updated = anyio.Event()
    updates: list[str] = []
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_message(message: object) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(message.params.uri)
            updated.set()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async with Client(
        everything_bridge.url, mode="legacy", message_handler=on_message, logging_callback=on_log
    ) as client:
        uri = (await client.list_resources()).resources[0].uri
        await _subscription(client, "resources/subscribe", uri)
        await client.call_tool("toggle-subscriber-updates", {})
        try:
            with anyio.fail_after(10):
                await updated.wait()
        finally:
            await client.call_tool("toggle-subscriber-updates", {})
            await _subscription(client, "resources/unsubscribe", uri)

    assert set(updates) == {uri}
    # server-everything logs each subscribe request to the subscriber (connection-wide for us).
    assert any(uri in str(log.data) for log in logs)


async def test_a_2026_07_28_listen_stream_gets_resource_updates(everything_bridge: Bridge) -> None:
    async with Client(everything_bridge.url) as client:
        assert client.protocol_version == "2026-07-28"
        uri = (await client.list_resources()).resources[0].uri
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            await client.call_tool("toggle-subscriber-updates", {})
            try:
                with anyio.fail_after(10):
                    event = await subscription.__anext__()
            finally:
                await client.call_tool("toggle-subscriber-updates", {})

    assert getattr(event, "uri", None) == uri


async def _subscription(client: Client, method: str, uri: str) -> None:
    # Client.subscribe_resource is deprecated (removed in 2026-07-28): send the request itself.
    request: types.SubscribeRequest | types.UnsubscribeRequest
    if method == "resources/subscribe":
        request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
    else:
        request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))
    await client.session.send_request(request, types.EmptyResult)


# --- lifecycle --------------------------------------------------------------------------------


def test_sigterm_stops_the_bridge_and_its_child(tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, "time", [str(TIME_SERVER)])
    try:
        child_pid = bridge.wait_healthy()["child_pid"]
        bridge.process.send_signal(signal.SIGTERM)
        code = bridge.wait_exit(EXIT_DEADLINE_S)
    finally:
        bridge.stop()

    assert code == 0, bridge.log_text()
    wait_gone(child_pid)


def test_a_killed_child_makes_the_bridge_exit_with_an_error(tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, "time", [str(TIME_SERVER)])
    try:
        child_pid = bridge.wait_healthy()["child_pid"]
        os.kill(child_pid, signal.SIGKILL)
        code = bridge.wait_exit(EXIT_DEADLINE_S)
    finally:
        bridge.stop()

    assert code == 1, bridge.log_text()
    wait_gone(child_pid)


# A child that never answers initialize and ignores both its stdin and SIGTERM.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def test_a_stubborn_child_keeps_health_starting_and_is_killed_at_stop(tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, "stubborn", [sys.executable, "-c", STUBBORN])
    try:
        started = wait_until(
            lambda: re.search(r"started child (\d+)", bridge.log_text()),
            what="the child to start",
            timeout_s=HEALTH_DEADLINE_S,
            interval=0.1,
            detail=bridge.log_text,
        )
        status, body = bridge.health()
        bridge.process.send_signal(signal.SIGTERM)
        code = bridge.wait_exit(EXIT_DEADLINE_S)
    finally:
        bridge.stop()

    assert (status, body) == (503, {"status": "starting", "server": "stubborn"})
    assert code == 0, bridge.log_text()
    assert "SIGKILL" in bridge.log_text()  # stdin closed, then SIGTERM, both ignored
    wait_gone(int(started.group(1)))


def test_a_child_that_never_initializes_fails_the_bridge(tmp_path: Path) -> None:
    bridge = start_bridge(
        tmp_path,
        "mute",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        "--init-timeout",
        "0.5",
    )
    try:
        code = bridge.wait_exit(EXIT_DEADLINE_S)
    finally:
        bridge.stop()

    assert code == 1, bridge.log_text()


def test_a_missing_program_fails_the_bridge(tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, "missing", [str(tmp_path / "no-such-program")])
    try:
        code = bridge.wait_exit(EXIT_DEADLINE_S)
    finally:
        bridge.stop()

    assert code == 1, bridge.log_text()


# --- trust: the bridge serves only what the gateway vouched for ------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_the_bridge_refuses_whoever_the_gateway_did_not_vouch_for(
    tmp_path: Path, era: str
) -> None:
    state = tmp_path / ".atrium"
    rotate_caller_keys(state, "http://localhost:8080")
    keys = str(state / PUBLIC_FILE)
    bridge = start_bridge(tmp_path, "time", [str(TIME_SERVER)], "--caller-keys", keys)
    try:
        bridge.wait_healthy()
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        async with httpx2.AsyncClient() as http:
            accept = {"Accept": "application/json, text/event-stream"}
            anonymous = await http.post(bridge.url, json=call, headers=accept)
            other = await http.post(
                bridge.url, json=call, headers={**accept, **assertion(state, "everything")}
            )
        async with vouched_client(bridge.url, state, "time", mode=era) as client:
            result = await client.call_tool("get_current_time", {"timezone": "UTC"})
    finally:
        bridge.stop()

    assert (anonymous.status_code, other.status_code) == (401, 401)
    assert result.is_error is False
    assert "refused POST /mcp" in bridge.log_text()


def test_the_bridge_will_not_start_without_keys_or_an_explicit_choice(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "atrium.bridge", "--name", "time", "--port", "5999"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_")}

    finished = subprocess.run(
        [*argv, "--", str(TIME_SERVER)], env=env, capture_output=True, text=True, timeout=30
    )

    assert finished.returncode == 2
    assert "--unauthenticated" in finished.stderr
