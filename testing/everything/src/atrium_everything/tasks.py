"""Tools that run as tasks: the tasks extension of 2026-07-28 (``io.modelcontextprotocol/tasks``,
SEP-2663), as the conformance scenarios ``tasks-*`` call them, on Atrium's ``Tasks``.

* ``greet``: never a task, however the client asks (a ``task`` hint of 2025-11-25 is ignored).
* ``slow_compute``: a task for ``seconds`` > 0 (0 answers at once), ``cancelled`` when cancelled.
* ``failing_job``: a task only (``required``) whose tool fails: ``completed`` with ``isError``.
* ``protocol_error_job``: a task that ends in a JSON-RPC error: ``failed``.
* ``confirm_delete``, ``multi_input``: tasks that ask the client, once and twice at a time
  (``input_required`` until ``tasks/update`` answers every request). Nothing is deleted.
* ``test_tool_with_task``: asks the user's name the synchronous way (``InputRequiredResult``,
  SEP-2322), then becomes a task whose result greets that name.

None of them changes anything, so all are annotated read-only: callers without a token may
call them behind a gateway whose server is open to them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    ToolAnnotations,
)

from atrium.servers.tasks import Tasks
from atrium_everything.input_required import ask_name, response

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
FAILING_JOB_S = 0.5


def add_task_tools(server: MCPServer[Any], tasks: Tasks) -> None:
    """Register the tools of the ``tasks-*`` scenarios."""

    @server.tool(description="Greets `name`; never runs as a task.", annotations=_READ_ONLY)
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    @tasks.tool(server, description="Waits `seconds`, as a task.", annotations=_READ_ONLY)
    async def slow_compute(seconds: float, label: str = "") -> str:
        if seconds > 0 and await tasks.detach(f"Computing {label or 'something'}"):
            await asyncio.sleep(seconds)
        return f"Computed {label or 'something'} in {seconds:g} s"

    @tasks.tool(
        server,
        support="required",
        description="A task whose tool always fails.",
        annotations=_READ_ONLY,
    )
    async def failing_job() -> str:
        await tasks.detach()
        await asyncio.sleep(FAILING_JOB_S)
        raise ToolError("failing_job failed, as it always does")

    @tasks.tool(server, description="A task that ends in a protocol error.", annotations=_READ_ONLY)
    async def protocol_error_job() -> str:
        await tasks.detach()
        raise MCPError(INTERNAL_ERROR, "protocol_error_job broke, as it always does")

    add_asking_task_tools(server, tasks)


def add_asking_task_tools(server: MCPServer[Any], tasks: Tasks) -> None:
    """Tasks that need answers from the client, before or while they run."""

    @tasks.tool(
        server,
        support="required",
        description="Asks whether to delete `filename` (deletes nothing).",
        annotations=_READ_ONLY,
    )
    async def confirm_delete(filename: str) -> str:
        await tasks.detach()
        answers = await tasks.ask({"confirm": ask_confirm(f"Delete {filename}?")})
        confirmed = _accepted(answers.get("confirm")).get("confirm") is True
        return f"{'Deleted' if confirmed else 'Kept'} {filename} (nothing was really deleted)"

    @tasks.tool(
        server,
        support="required",
        description="Asks two things at once.",
        annotations=_READ_ONLY,
    )
    async def multi_input() -> str:
        await tasks.detach()
        answers = await tasks.ask({"name": ask_name(), "confirm": ask_confirm("Sure?")})
        name = _accepted(answers.get("name")).get("name", "someone")
        return f"{name} answered both questions"

    @tasks.tool(
        server,
        support="required",
        description="Asks your name, then greets you as a task.",
        annotations=_READ_ONLY,
    )
    async def test_tool_with_task(ctx: Context[Any, Any]) -> str | InputRequiredResult:
        answer = response(ctx, "user_name", ElicitResult)
        if answer is None or answer.action != "accept" or not answer.content:
            return InputRequiredResult(input_requests={"user_name": ask_name()})
        name = answer.content.get("name", "someone")
        await tasks.detach()
        return f"Hello, {name}! (from a task)"


def ask_confirm(message: str) -> ElicitRequest:
    """An elicitation of one boolean, ``confirm``."""
    schema = {"type": "object", "properties": {"confirm": {"type": "boolean"}}}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _accepted(answer: Any) -> dict[str, Any]:
    """The content of an accepted elicitation, as a client sent it; empty otherwise."""
    try:
        result = ElicitResult.model_validate(answer)
    except ValueError:
        return {}
    return dict(result.content or {}) if result.action == "accept" else {}
