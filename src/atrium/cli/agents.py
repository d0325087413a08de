"""``atrium agents``: the project's agents (``services/agents/*.md``), run from the terminal.

``run`` streams the answer as the model writes it, one line per tool call (name, duration,
ok or the error) and the usage at the end; ``--json`` prints the run's events, one JSON object
per line (``atrium.ai.run_events``). A run is the operator's (admin, as every CLI command on
the gateway's machine) unless ``--user`` names a user of this project: then it reaches only
what that user may call, and the audit names that user. Ctrl-C stops the model and the tool
calls in flight; the conversation keeps what was done and can be continued.
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from atrium.ai.run_events import (
    RunEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    TextChunk,
    ToolFinished,
    as_json,
)
from atrium.auth.roles import ADMIN, Roles
from atrium.cli.context import CliState, state
from atrium.cli.safe_text import safe_text
from atrium.cli.tables import table
from atrium.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from atrium.ai.discovery import RunAs
    from atrium.ai.service import AgentService
    from atrium.store import Store

app = typer.Typer(help="Agents: list, show and run them, and their conversations.")
conversations_app = typer.Typer(help="Your conversations with agents.")
app.add_typer(conversations_app, name="conversations")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
UserOption = Annotated[
    str | None,
    typer.Option("--user", help="Run as this user of the project (default: the operator, admin)."),
]
EXIT_INTERRUPTED = 130


async def _run_as(cli: CliState, store: Store, user: str | None) -> RunAs:
    from atrium.ai.discovery import RunAs

    if user is None:
        return RunAs(subject=f"operator:{getpass.getuser()}", scopes=frozenset({ADMIN}))
    record = await store.users.by_username(user)
    if record is None:
        raise NotFoundError("user", user, [u.username for u in await store.users.list()])
    if record.disabled:
        raise UsageError(f"--user: user {user!r} is disabled")
    return RunAs(subject=record.id, scopes=Roles(cli.settings.oauth.roles).scopes_of(record.role))


def _service(cli: CliState, store: Store) -> AgentService:
    from atrium.ai.service import AgentService

    return AgentService(cli.settings, store)


@app.command("list")
def list_agents(ctx: typer.Context, as_json_: JsonOption = False) -> None:
    """Every agent of services/agents/: name, model, description."""
    from atrium.ai.agents import load_agents

    cli = state(ctx)
    agents = load_agents(cli.settings).values()
    if as_json_:
        cli.print_json([_agent_json(agent) for agent in agents])
        return
    rows = [[a.name, a.model, safe_text(a.description)] for a in agents]
    cli.out.print(table(["AGENT", "MODEL", "DESCRIPTION"], rows, prose_last=True))
    if not rows:
        cli.err.print("no agents: add one as services/agents/<name>.md", highlight=False)


@app.command("show")
def show(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="The agent's name.")],
    user: UserOption = None,
    as_json_: JsonOption = False,
) -> None:
    """An agent: its model (resolved), its servers and tools, and its prompt."""
    cli = state(ctx)

    async def work(store: Store) -> dict[str, Any]:
        from atrium.client.manager import McpManager

        run_as = await _run_as(cli, store, user)
        service = _service(cli, store)
        plan = await service.plan(agent, run_as)
        manager = McpManager(
            plan.discovered.specs,
            log_dir=cli.settings.logs_dir,
            allowed=plan.agent.tools,
            auth_for=service.auth_for(run_as),
        )
        async with manager:
            tools = [tool.name for tool in await manager.tools()]
            servers = {status.name: status.error for status in manager.status()}
        return {
            **_agent_json(plan.agent),
            "provider": plan.provider_name,
            "resolved_model": plan.model,
            "servers": servers,
            "left_out": plan.discovered.left_out,
            "tools": tools,
            "prompt": plan.agent.prompt,
        }

    shown = cli.with_store(work)
    if as_json_:
        cli.print_json(shown)
        return
    _print_show(cli, shown)


def _print_show(cli: CliState, shown: dict[str, Any]) -> None:
    out = cli.out
    out.print(f"[bold]{_shown(shown['name'])}[/] — {_shown(shown['description'])}")
    out.print(
        f"model: {_shown(shown['provider'])}:{_shown(shown['resolved_model'])}", highlight=False
    )
    for name, error in shown["servers"].items():
        status = "connected" if error is None else f"[red]not reachable[/]: {_shown(error)}"
        out.print(f"server {_shown(name)}: {status}", highlight=False)
    for name, reason in shown["left_out"].items():
        out.print(f"server {_shown(name)}: left out, {_shown(reason)}", highlight=False)
    out.print(f"tools ({len(shown['tools'])}):", highlight=False)
    for tool in shown["tools"]:
        out.print(f"  {_shown(tool)}", highlight=False)
    out.print("prompt:")
    out.print(safe_text(shown["prompt"], multiline=True), markup=False, highlight=False)


@app.command("run")
def run(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="The agent's name.")],
    message: Annotated[str, typer.Argument(help="What to ask the agent.")],
    conversation: Annotated[
        str | None,
        typer.Option("--conversation", help="Continue this conversation (its id)."),
    ] = None,
    user: UserOption = None,
    as_json_: JsonOption = False,
) -> None:
    """Run an agent on a message: the answer streams, each tool call is one line."""
    cli = state(ctx)
    printer = _JsonPrinter() if as_json_ else _Printer(cli)

    async def work(store: Store) -> RunEvent | None:
        service = _service(cli, store)
        run_as = await _run_as(cli, store, user)
        last: RunEvent | None = None
        async with service.start(agent, message, run_as, conversation) as events:
            async for event in events:
                printer.show(event)
                last = event
        return last

    try:
        last = cli.with_store(work)
    except KeyboardInterrupt:
        printer.stopped()
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if isinstance(last, RunFailed):
        raise typer.Exit(1)


def _shown(text: str) -> str:
    """Text from a model, a server or a file, for a line printed with markup on: what would act
    on the terminal escaped (``safe_text``), and so is what Rich would read as markup (a tool
    named ``[/]`` would end the run with an error, ``[green]✓[/]`` would fake a line)."""
    return escape(safe_text(text))


def _agent_json(agent: Any) -> dict[str, Any]:
    return {
        "name": agent.name,
        "description": agent.description,
        "model": agent.model,
        "allowed_tools": agent.allowed_tools,
        "servers": agent.servers,
        "source": agent.source,
    }


class _JsonPrinter:
    def show(self, event: RunEvent) -> None:
        print(json.dumps(as_json(event)), flush=True)

    def stopped(self) -> None:
        print(json.dumps({"type": "failed", "error": "stopped", "kind": "cancelled"}), flush=True)


class _Printer:
    """The run for a person: text as it streams, tool lines, usage, warnings on stderr."""

    def __init__(self, cli: CliState) -> None:
        self.cli = cli
        self.mid_line = False
        self.conversation_id: str | None = None

    def _text(self, text: str) -> None:
        self.cli.out.print(safe_text(text, multiline=True), end="", markup=False, highlight=False)
        self.cli.out.file.flush()
        self.mid_line = not text.endswith("\n")

    def _line(self, line: str) -> None:
        if self.mid_line:
            self.cli.out.print()
            self.mid_line = False
        self.cli.out.print(line, highlight=False)

    def show(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.conversation_id = event.conversation_id
            for server, error in event.servers.items():
                if error is not None:
                    self.cli.err.print(
                        f"[yellow]warning:[/] server '{_shown(server)}' is not reachable:"
                        f" {_shown(error)}",
                        highlight=False,
                    )
        elif isinstance(event, TextChunk):
            self._text(event.text)
        elif isinstance(event, ToolFinished):
            self._tool(event)
        elif isinstance(event, RunFinished):
            self._finished(event)
        elif isinstance(event, RunFailed):
            self._line("")
            self.cli.err.print(f"[red]error:[/] {_shown(event.error)}", highlight=False)

    def _tool(self, event: ToolFinished) -> None:
        took = f"{event.duration_ms:.0f} ms"
        if event.ok:
            self._line(f"[green]✓[/] {_shown(event.name)} [dim]{took}[/]")
        else:
            error = _shown(event.error or "failed")
            self._line(f"[red]✗[/] {_shown(event.name)} [dim]{took}[/]: {error}")

    def _finished(self, event: RunFinished) -> None:
        if self.mid_line:
            self.cli.out.print()
            self.mid_line = False
        if event.reason == "tool_rounds":
            self.cli.err.print(
                "[yellow]warning:[/] the agent used every tool round (ai.max_tool_rounds in"
                " services/ai/config.yaml) and still wanted more tools: its answer may be"
                " unfinished",
                highlight=False,
            )
        elif event.reason in ("max_tokens", "other"):
            why = "hit the output limit" if event.reason == "max_tokens" else "stopped early"
            self.cli.err.print(f"[yellow]warning:[/] the model {why}", highlight=False)
        self.cli.err.print(
            f"[dim]{event.rounds} rounds · {event.tool_calls} tool calls ·"
            f" {event.input_tokens} tokens in, {event.output_tokens} out ·"
            f" conversation {event.conversation_id}[/]",
            highlight=False,
        )

    def stopped(self) -> None:
        if self.mid_line:
            self.cli.out.print()
        where = f"; continue with --conversation {self.conversation_id}"
        self.cli.err.print(f"stopped{where if self.conversation_id else ''}", highlight=False)


@conversations_app.command("list")
def list_conversations(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Only with this agent.")] = None,
    user: UserOption = None,
    as_json_: JsonOption = False,
) -> None:
    """Your conversations, the newest first."""
    cli = state(ctx)

    async def work(store: Store) -> list[dict[str, Any]]:
        run_as = await _run_as(cli, store, user)
        records = await store.conversations.list(subject=run_as.subject, agent=agent)
        return [
            {
                "id": r.id,
                "agent": r.agent,
                "title": r.title,
                "messages": r.messages,
                "updated_at": r.updated_at.isoformat(),
            }
            for r in records
        ]

    listed = cli.with_store(work)
    if as_json_:
        cli.print_json(listed)
        return
    rows = [
        [c["id"], c["agent"], str(c["messages"]), c["updated_at"][:19], safe_text(c["title"])]
        for c in listed
    ]
    cli.out.print(table(["ID", "AGENT", "MESSAGES", "UPDATED", "TITLE"], rows, prose_last=True))


@conversations_app.command("show")
def show_conversation(
    ctx: typer.Context,
    conversation_id: Annotated[str, typer.Argument(help="The conversation's id.")],
    user: UserOption = None,
    as_json_: JsonOption = False,
) -> None:
    """One of your conversations, message by message."""
    cli = state(ctx)

    async def work(store: Store) -> list[dict[str, Any]]:
        from atrium.ai.transcript import as_json as message_json
        from atrium.ai.transcript import from_stored

        record = await _service(cli, store).conversation(
            conversation_id, await _run_as(cli, store, user)
        )
        return [message_json(m) for m in from_stored(await store.conversations.messages(record.id))]

    messages = cli.with_store(work)
    if as_json_:
        cli.print_json(messages)
        return
    for message in messages:
        cli.out.print(_message_line(message), highlight=False, markup=False)


def _message_line(message: dict[str, Any]) -> str:
    role = message["role"]
    if role == "tool":
        mark = "error" if message["is_error"] else "result"
        return f"tool {message['name']} ({mark}): {safe_text(message['content'][:500])}"
    calls = ", ".join(call["name"] for call in message.get("tool_calls", ()))
    text = safe_text(message["text"], multiline=True)
    return f"{role}: {text}" + (f"\n  calls {safe_text(calls)}" if calls else "")


@conversations_app.command("delete")
def delete_conversation(
    ctx: typer.Context,
    conversation_id: Annotated[str, typer.Argument(help="The conversation's id.")],
    user: UserOption = None,
) -> None:
    """Delete one of your conversations and its messages."""
    cli = state(ctx)

    async def work(store: Store) -> None:
        record = await _service(cli, store).conversation(
            conversation_id, await _run_as(cli, store, user)
        )
        await store.conversations.delete(record.id)

    cli.with_store(work)
    cli.err.print(f"deleted conversation {conversation_id}", highlight=False)
