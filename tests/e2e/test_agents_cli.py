"""``atrium agents`` end to end: a real Atrium (gateway + the built-in ``atrium`` server), a
model API on loopback speaking the Chat Completions wire format (an OpenAI-compatible local
server, as the README's example), and the CLI as a user runs it.

The agent's tool calls reach the hosted server through the gateway with a token for the run's
user, so the audit names that user and marks the calls in-app.

Most commands run in this process (``run_atrium``: the same ``main`` a user's shell reaches);
the README's example and Ctrl-C run ``python -m atrium`` as a subprocess, as a user does, so
the real entry point, its exit codes and its signal handling stay covered. A subprocess costs
the CLI's imports each time (~2 s with ``agents run``), which made this file a long pole.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atrium.settings import load_settings
from atrium.store import Store
from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import OpenAIChatFake, text, tool_call, tool_calls
from tests.cli.helpers import CliResult, run_atrium
from tests.e2e.instance import Instance, started_instance
from tests.polling import wait_until
from tests.processes import other_threads, signal_thread

PLAYBOOKS = "mcp__atrium__list_playbooks"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    with started_instance(tmp_path_factory.mktemp("agents-cli")) as running:
        running.env[KEY_VARIABLE] = "sk-test"
        yield running


def agents(instance: Instance, *args: str) -> CliResult:
    """``atrium agents ARGS`` in this process."""
    return run_atrium("--project", str(instance.project), "agents", *args, env=instance.env)


def agents_process(instance: Instance, *args: str) -> subprocess.CompletedProcess[str]:
    """``atrium agents ARGS`` as a user's shell runs it: ``python -m atrium`` in a subprocess."""
    argv = [sys.executable, "-m", "atrium", "--project", str(instance.project), "agents", *args]
    return subprocess.run(argv, env=instance.env, capture_output=True, text=True, timeout=120)


def _user_id(instance: Instance, username: str) -> str:
    async def read() -> str:
        settings = load_settings(instance.project, environ=instance.env)
        async with await Store.open(settings) as store:
            record = await store.users.by_username(username)
            assert record is not None
            return record.id

    return asyncio.run(read())


def _tool_audit(instance: Instance, tool: str) -> list[dict[str, Any]]:
    records = json.loads(instance.atrium("infra", "logs", "request", "list", "--json", "-n", "50"))
    return [r for r in records if r.get("tool") == tool]


def test_a_two_round_run_calls_a_hosted_tool_as_its_user(instance: Instance) -> None:
    with OpenAIChatFake(
        [tool_call(PLAYBOOKS, {}, text="Let me look."), text("There are no playbooks yet.")]
    ) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper", allowed_tools=["mcp__atrium__*"])
        done = agents(instance, "run", "helper", "Which playbooks are there?", "--user", "admin")
        assert done.exit_code == 0, done.stderr
        second = fake.requests[1].body
    assert "Let me look." in done.stdout
    assert "There are no playbooks yet." in done.stdout
    tool_line = next(line for line in done.stdout.splitlines() if PLAYBOOKS in line)
    assert "✓" in tool_line
    assert " ms" in tool_line
    assert "2 rounds · 1 tool calls" in done.stderr
    # The tool's result went back to the model as the tool message of its call.
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 1
    assert "playbooks" in tool_messages[0]["content"]
    assert second["tools"]
    assert all(t["function"]["name"].startswith("mcp__atrium__") for t in second["tools"])
    admin_id = _user_id(instance, "admin")
    calls = wait_until(lambda: _tool_audit(instance, "list_playbooks"), what="audited call")
    assert calls[0]["subject"] == admin_id
    assert calls[0]["origin"] == "in-app"
    assert calls[0]["client_id"] == "atrium-agents"
    assert calls[0]["outcome"] == "ok"


def test_json_events_and_continuing_a_conversation(instance: Instance) -> None:
    with OpenAIChatFake([text("First answer."), text("Second answer.")]) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper")
        first = agents(instance, "run", "helper", "Hello", "--json")
        assert first.exit_code == 0, first.stderr
        events = [json.loads(line) for line in first.stdout.splitlines()]
        assert next(e["type"] for e in events) == "started"
        assert events[-1]["type"] == "finished"
        assert events[-1]["text"] == "First answer."
        conversation = events[0]["conversation_id"]
        again = agents(instance, "run", "helper", "And then?", "--conversation", conversation)
        assert again.exit_code == 0, again.stderr
        history = fake.requests[1].body["messages"]
    assert [m["role"] for m in history if m["role"] != "system"] == ["user", "assistant", "user"]
    assert history[-1]["content"] == "And then?"
    listed = json.loads(agents(instance, "conversations", "list", "--json").stdout)
    assert conversation in [c["id"] for c in listed]
    shown = json.loads(agents(instance, "conversations", "show", conversation, "--json").stdout)
    assert [m["role"] for m in shown] == ["user", "assistant", "user", "assistant"]
    deleted = agents(instance, "conversations", "delete", conversation)
    assert deleted.exit_code == 0, deleted.stderr
    gone = agents(instance, "conversations", "show", conversation)
    assert gone.exit_code == 1
    assert "not found" in gone.stderr


def test_list_and_show(instance: Instance) -> None:
    with OpenAIChatFake([]) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper", allowed_tools=[PLAYBOOKS])
        listed = json.loads(agents(instance, "list", "--json").stdout)
        shown = agents(instance, "show", "helper", "--json")
    assert "helper" in [a["name"] for a in listed]
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["tools"] == [PLAYBOOKS]
    assert data["servers"]["atrium"] is None
    assert data["provider"] == "fake"
    assert data["resolved_model"] == "test-model"


@pytest.mark.parametrize(
    ("setup", "args", "code", "said"),
    [
        ("none", ["run", "nobody", "hi"], 1, "agent 'nobody' not found"),
        ("bad-key", ["run", "broken", "hi"], 2, "broken.md:4:1: colour: unknown key"),
        ("unknown-provider", ["run", "helper", "hi"], 2, "'nope' is not a provider"),
        ("missing-key", ["run", "helper", "hi"], 2, KEY_VARIABLE),
        ("none", ["run", "helper", "  "], 2, "the message is empty"),
        ("none", ["run", "helper", "hi", "--user", "ghost"], 1, "user 'ghost' not found"),
        ("none", ["run", "helper", "hi", "--conversation", "0" * 32], 1, "not found"),
    ],
)
def test_bad_input_is_a_clear_error(
    instance: Instance, setup: str, args: list[str], code: int, said: str
) -> None:
    with OpenAIChatFake([text("unused")]) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper")
        if setup == "bad-key":
            path = instance.project / "services/agents/broken.md"
            path.write_text("---\nname: broken\ndescription: x\ncolour: blue\n---\nHi\n")
        if setup == "unknown-provider":
            write_agent(instance.project, "helper", model="nope:some-model")
        env_backup = dict(instance.env)
        if setup == "missing-key":
            instance.env.pop(KEY_VARIABLE)
        try:
            done = agents(instance, *args)
        finally:
            instance.env.clear()
            instance.env.update(env_backup)
            (instance.project / "services/agents/broken.md").unlink(missing_ok=True)
        assert fake.remaining == 1  # nothing reached the model
    assert done.exit_code == code, (done.stdout, done.stderr)
    assert said in done.stderr
    assert "Traceback" not in done.stderr


def test_tool_rounds_run_out(instance: Instance) -> None:
    script = [tool_call(PLAYBOOKS, {}), tool_call(PLAYBOOKS, {}), tool_call(PLAYBOOKS, {})]
    with OpenAIChatFake(script) as fake:
        write_ai_config(instance.project, fake, max_tool_rounds=2)
        write_agent(instance.project, "helper")
        done = agents(instance, "run", "helper", "Loop forever")
        last = fake.requests[-1].body
    assert done.exit_code == 0, done.stderr
    assert "every tool round" in done.stderr
    assert last["tool_choice"] == "none"  # the answer-now turn: tools defined, none callable
    assert "used all 2 tool rounds" in json.dumps(last["messages"])


def test_a_tool_the_agent_was_not_given(instance: Instance, tmp_path: Path) -> None:
    with OpenAIChatFake([tool_call("mcp__atrium__atrium", {"command": "x"}), text("ok")]) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper", allowed_tools=[PLAYBOOKS])
        done = agents(instance, "run", "helper", "Run a command", "--json")
        result = next(m for m in fake.requests[1].body["messages"] if m["role"] == "tool")
    assert done.exit_code == 0, done.stderr
    finished = [json.loads(line) for line in done.stdout.splitlines()]
    tool = next(e for e in finished if e["type"] == "tool_finished")
    assert tool["ok"] is False
    assert "no tool 'mcp__atrium__atrium'" in tool["error"]
    assert "no tool 'mcp__atrium__atrium'" in result["content"]


def test_ctrl_c_stops_the_model_and_keeps_the_conversation(instance: Instance) -> None:
    with OpenAIChatFake([text("Thinking about it", stall=True)]) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper")
        process, started = _streaming_run(instance, "helper")
        process.send_signal(signal.SIGINT)
        out, err = _communicated(process, timeout_s=30)
        wait_until(lambda: fake.abandoned == 1, what="the model stream closed")
    assert process.returncode == 130, err
    assert json.loads(out.splitlines()[-1])["kind"] == "cancelled"
    assert "Traceback" not in err
    shown = agents(instance, "conversations", "show", started["conversation_id"], "--json")
    assert [m["role"] for m in json.loads(shown.stdout)] == ["user"]


def test_ctrl_c_stops_the_run_whichever_of_its_threads_takes_the_signal(
    instance: Instance,
) -> None:
    # The kernel hands a signal sent to a process to any of its threads that does not block it
    # (aiosqlite's, an executor worker), not always the main one. A run with no server has
    # nothing else that wakes its event loop while the model stalls.
    with OpenAIChatFake([text("Thinking about it", stall=True)]) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "alone", servers=[])
        process, started = _streaming_run(instance, "alone")
        signal_thread(process.pid, other_threads(process.pid)[0], signal.SIGINT)
        out, err = _communicated(process, timeout_s=30)
        wait_until(lambda: fake.abandoned == 1, what="the model stream closed")
    assert process.returncode == 130, err
    assert json.loads(out.splitlines()[-1])["kind"] == "cancelled"
    shown = agents(instance, "conversations", "show", started["conversation_id"], "--json")
    assert [m["role"] for m in json.loads(shown.stdout)] == ["user"]


def _streaming_run(instance: Instance, agent: str) -> tuple[subprocess.Popen[str], Any]:
    """``atrium agents run AGENT ... --json`` as a user's shell runs it, once the model's text
    has begun to stream; and its ``started`` event."""
    argv = [sys.executable, "-m", "atrium", "--project", str(instance.project)]
    # PYTHONFAULTHANDLER: a run that does not stop is made to say where each thread was.
    process = subprocess.Popen(
        [*argv, "agents", "run", agent, "Take your time", "--json"],
        env={**instance.env, "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    started = json.loads(process.stdout.readline())
    assert json.loads(process.stdout.readline())["type"] == "text"
    return process, started


def _communicated(process: subprocess.Popen[str], timeout_s: float) -> tuple[str, str]:
    """``process``'s output once it ends; one still running after ``timeout_s`` is aborted
    (its threads' stacks on stderr, from the fault handler) and the test fails with them."""
    try:
        return process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        pytest.fail(f"still running {timeout_s:g} s after Ctrl-C; its stacks:\n{err[-6000:]}")


def _readme_block(language: str, after: str) -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index(after) :]
    start = section.index(f"```{language}\n") + len(language) + 4
    return section[start : section.index("```", start)]


def test_the_readme_example_runs(instance: Instance) -> None:
    config = _readme_block("yaml", "### Agents")
    agent = _readme_block("markdown", "### Agents").split("\n", 1)[1]  # after the comment
    script = [tool_call(PLAYBOOKS, {}, text="Let me look."), text("There are none yet.")]
    with OpenAIChatFake(script) as fake:
        path = instance.project / "services/ai/config.yaml"
        path.write_text(config.replace("http://localhost:11434/v1", fake.base_url))
        (instance.project / "services/agents/assistant.md").write_text(agent)
        done = agents_process(instance, "run", "assistant", "Which playbooks are there?")
        model = fake.requests[0].body["model"]
    assert done.returncode == 0, done.stderr
    assert model == "llama3.1"
    assert f"✓ {PLAYBOOKS}" in done.stdout
    assert "2 rounds · 1 tool calls" in done.stderr


def test_a_tool_name_that_looks_like_markup_is_printed_as_it_is(instance: Instance) -> None:
    script = [tool_calls(("[/]", {}), ("[green]✓[/] mcp__x__y", {})), text("Done.")]
    with OpenAIChatFake(script) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper")
        done = agents(instance, "run", "helper", "Call odd tools")

    assert done.exit_code == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("✗")]
    assert [line.split(" ")[1] for line in lines] == ["[/]", "[green]✓[/]"]
