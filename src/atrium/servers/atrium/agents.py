"""The ``atrium`` server's agent tools: any MCP client can hand a task to one of the project's
agents (seed 003: "turns your agent into a service"; Atrium issue 13, "Faces: MCP").

* ``list_agents`` (read-only) lists ``services/agents/*.md``: name, description, model. A
  broken file is named in ``problems`` and does not hide the others.
* ``run_agent`` runs one agent in this process (``atrium.ai.service``) for its caller, as
  ``RunAs(caller.subject, caller.scopes, depth)``: the run's MCP calls go through the gateway
  with tokens for that subject and never more scopes than the caller's token holds, so the
  gateway's policy, rate limits and audit apply to the agent as to its caller. The answer is
  the agent's final text plus ``structuredContent`` (``AgentRunResult``); a run that fails is
  a tool error. An anonymous caller is refused: a run acts as someone, and its conversation
  (continued with ``conversation_id``) belongs to someone.

Depth: every tool call an agent makes carries ``_meta[DEPTH_META]``, its own depth plus one,
which this tool reads back, so an agent calling ``run_agent`` (itself or another) runs one
level deeper and ``AgentService.start`` refuses at ``MAX_AGENT_DEPTH``: an agent cannot recurse
without end. A client may send a depth (that only leaves it fewer levels); one that is not a
non-negative integer is refused rather than read as 0, which would reopen every level.

Progress: a client that sends a ``progressToken`` gets ``notifications/progress`` once per tool
call the agent finished. Each one is also a message on the response stream, which the gateway's
``timeout_s`` (time without a message) counts.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from atrium.ai.agents import AGENTS_DIR, agent_files, load_agent
from atrium.ai.discovery import RunAs
from atrium.ai.run_events import FinishReason, RunEvent, RunFailed, RunFinished, ToolFinished
from atrium.ai.service import DEPTH_META, AgentService
from atrium.errors import AtriumError, ConfigError, NotFoundError
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import signed_in_caller
from atrium.settings import Settings
from atrium.store import Store

logger = logging.getLogger(__name__)

# Said when the provider's key is missing: the atrium server's process does not inherit the
# gateway's environment (atrium.supervisor.spec), so a key set where `atrium start` runs is
# not set here unless the server's YAML passes it on.
KEY_HINT = (
    "\n(the atrium server sees only the environment its services/mcp/atrium.yaml passes on:"
    " add the variable under env:, or use a $file reference)"
)

AgentName = Annotated[str, Field(description="The agent's name, from list_agents.")]
AgentMessage = Annotated[str, Field(description="What the agent should do, in plain words.")]
ConversationId = Annotated[
    str | None,
    Field(
        description=(
            "Continue one of your earlier runs with this agent: the conversation_id it returned."
            " Omit to start a new conversation."
        )
    ),
]


class ToolCallSummary(BaseModel):
    name: str = Field(description="The tool as the agent saw it: mcp__<server>__<tool>.")
    ok: bool
    duration_ms: float
    error: str | None = Field(description="Why the call failed; null when it succeeded.")


class AgentRunResult(BaseModel):
    """The structured content of a ``run_agent`` call."""

    conversation_id: str = Field(description="Pass it as conversation_id to continue the run.")
    text: str = Field(description="The agent's final answer.")
    reason: FinishReason = Field(
        description=(
            "answered; max_tokens: cut at the output limit; tool_rounds: the agent ran out of"
            " tool rounds; other: the model stopped for a reason of its own."
        )
    )
    tool_calls: list[ToolCallSummary] = Field(description="The agent's tool calls, as they ended.")
    input_tokens: int
    output_tokens: int


class AgentSummary(BaseModel):
    name: str
    description: str
    model: str = Field(
        description="As the agent file says: inherit (the default model), <model> or"
        " <provider>:<model>."
    )


class AgentListing(BaseModel):
    agents: list[AgentSummary]
    problems: list[str] = Field(description="Agent files that could not be read, and why.")


def add_agent_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register ``list_agents`` and ``run_agent`` on the atrium server of ``settings``."""

    @server.tool(
        title="List agents",
        description="List the project's agents (name, description, model) that run_agent runs.",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    def list_agents() -> AgentListing:
        return _listing(settings)

    @server.tool(
        title="Run an agent",
        description=(
            "Run one of the project's agents on a task and return its answer. The agent acts"
            " as you, with your permissions, and may call tools (write tools too) and a model"
            " API; it can take minutes. Continue a run by passing its conversation_id."
        ),
        # Not read-only: the agent may call any tool its caller may. Not idempotent: each call
        # is a new model run, with its own tool calls.
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )
    async def run_agent(
        agent: AgentName,
        message: AgentMessage,
        ctx: Context[Store, Any],
        conversation_id: ConversationId = None,
    ) -> Annotated[CallToolResult, AgentRunResult]:
        run_as = _run_as(ctx)
        service = AgentService(settings, ctx.request_context.lifespan_context)
        calls: list[ToolCallSummary] = []
        try:
            async with service.start(agent, message, run_as, conversation_id) as events:
                last = await _follow(events, calls, ctx)
        except AtriumError as exc:
            logger.info("run_agent %s for %s refused: %s", agent, run_as.subject, exc)
            raise ToolError(_told(exc)) from None
        logger.info(
            "ran agent %s for %s at depth %d: %s",
            agent,
            run_as.subject,
            run_as.depth,
            last.reason if isinstance(last, RunFinished) else f"failed ({last.kind})",
        )
        return _result(last, calls)


def _run_as(ctx: Context[Store, Any]) -> RunAs:
    """Who the run acts as: the caller the gateway vouched for, at the request's depth."""
    caller = signed_in_caller(
        ctx,
        "an agent run needs a signed-in caller: the agent acts as you and keeps the"
        " conversation as yours; call run_agent with an access token",
    )
    assert caller.subject is not None
    return RunAs(subject=caller.subject, scopes=caller.scopes, depth=_depth(ctx))


def _depth(ctx: Context[Store, Any]) -> int:
    meta: Mapping[str, Any] = ctx.request_context.meta or {}  # an open map beyond its known keys
    if DEPTH_META not in meta:
        return 0
    value = meta[DEPTH_META]
    # bool is an int to Python, never to JSON: `true` is not a depth.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ToolError(
            f"_meta '{DEPTH_META}' must be a non-negative integer (how many agent runs this"
            f" call is inside), not {json.dumps(value)}"
        )
    return value


async def _follow(
    events: AsyncGenerator[RunEvent, None],
    calls: list[ToolCallSummary],
    ctx: Context[Store, Any],
) -> RunFinished | RunFailed:
    """Read the run to its end, gathering its tool calls; the last event is what it came to."""
    last: RunFinished | RunFailed | None = None
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, ToolFinished):
                calls.append(
                    ToolCallSummary(
                        name=event.name,
                        ok=event.ok,
                        duration_ms=event.duration_ms,
                        error=event.error,
                    )
                )
                outcome = "done" if event.ok else "failed"
                # A no-op unless the client sent a progressToken (the SDK checks).
                await ctx.report_progress(len(calls), message=f"{event.name}: {outcome}")
            elif isinstance(event, RunFinished | RunFailed):
                last = event
    if last is None:  # the service promises a last event; a stream without one is our bug
        raise RuntimeError("the agent's event stream ended without finished or failed")
    return last


def _result(last: RunFinished | RunFailed, calls: list[ToolCallSummary]) -> CallToolResult:
    if isinstance(last, RunFailed):
        kept = f" (conversation {last.conversation_id} keeps what was done)"
        raise ToolError(f"the agent run failed: {last.error}{kept if last.conversation_id else ''}")
    structured = AgentRunResult(
        conversation_id=last.conversation_id,
        text=last.text,
        reason=last.reason,
        tool_calls=calls,
        input_tokens=last.input_tokens,
        output_tokens=last.output_tokens,
    )
    # The text a model reads is the agent's answer itself, not the JSON around it.
    return CallToolResult(
        content=[TextContent(type="text", text=last.text or "(the agent gave no text)")],
        structured_content=structured.model_dump(mode="json"),
    )


def _told(exc: AtriumError) -> str:
    """The message of a run that could not start, with the hint a missing key needs here."""
    if isinstance(exc, ConfigError) and any(p.key_path.endswith(".api_key") for p in exc.problems):
        return str(exc) + KEY_HINT
    return str(exc)


def _listing(settings: Settings) -> AgentListing:
    agents: list[AgentSummary] = []
    problems: list[str] = []
    for path in agent_files(settings):
        try:
            agent = load_agent(settings, path.stem)
        except ConfigError as exc:
            problems.extend(str(problem) for problem in exc.problems)
            continue
        except NotFoundError:  # a file whose name is no agent name: run_agent cannot reach it
            problems.append(
                f"{AGENTS_DIR}/{path.name}: '{path.stem}' is not an agent name (lowercase"
                " letters, digits and '-')"
            )
            continue
        agents.append(
            AgentSummary(name=agent.name, description=agent.description, model=agent.model)
        )
    return AgentListing(agents=agents, problems=problems)
