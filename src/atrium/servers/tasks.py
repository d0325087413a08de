"""Long tools as tasks: the tasks extension, ``io.modelcontextprotocol/tasks`` (SEP-2663).

A client that lists the extension in a request's capabilities (2026-07-28, per request) lets
the server answer its ``tools/call`` with a task handle (``resultType: "task"``) instead of the
result, and then polls ``tasks/get`` for the result, answers the task's questions with
``tasks/update`` and may stop it with ``tasks/cancel``. The server decides, per call, whether
a call becomes a task. Here the tool decides, as it runs::

    tasks = Tasks()
    server = AtriumServer("reports", version="1.0.0", extensions=[tasks])

    @tasks.tool(server, description="Builds the quarterly report.")
    async def build_report(quarter: str) -> str:
        if not await tasks.detach():   # from here on a task; False: the caller waits instead
            ...
        answers = await tasks.ask({"confirm": ElicitRequest(params=...)})
        return "the report"

``detach()`` creates the task (stored before its id goes out, as SEP-2663 requires) and lets
the ``tools/call`` answer with its handle while the tool goes on; what the tool returns becomes
the task's result, an ``MCPError`` it raises the task's error (``failed``), ``tasks/cancel``
cancels it (``cancelled``). A tool may first gather input the synchronous way, returning an
``InputRequiredResult`` (SEP-2322), and detach only on the round that has what it needs.
``ask()`` asks the client while running as a task: the task is ``input_required`` until every
request is answered (a client may answer them one ``tasks/update`` at a time).

``support="required"``: the tool cannot run but as a task; a caller that did not negotiate
the extension gets -32021 with the capability it lacks. ``"optional"``: such a caller simply
waits for the result, ``detach()`` returning ``False``. A task belongs to the caller the
gateway vouched for when it was created (``atrium.servers.trust``); anyone else naming it finds
nothing. Tasks are kept in memory (``atrium.servers.task_store``): a server process that stops
forgets them. Progress and log notifications of a detached tool reach nobody: its request has
been answered (SEP-2663 has no channel for them).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolRequestParams,
    ClientCapabilities,
    InputRequest,
    MissingRequiredClientCapabilityErrorData,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from atrium.auth.assertion import CallerIdentity
from atrium.servers.task_store import (
    DEFAULT_MAX_TASKS,
    DEFAULT_POLL_INTERVAL_MS,
    DEFAULT_TTL_MS,
    Owner,
    TaskRecord,
    TaskStore,
)
from atrium.servers.trust import SCOPE_KEY

EXTENSION = "io.modelcontextprotocol/tasks"

Support = Literal["optional", "required"]
ToolFunction = TypeVar("ToolFunction", bound=Callable[..., Any])


class TaskParams(RequestParams):
    """``tasks/get`` and ``tasks/cancel``."""

    task_id: str


class UpdateTaskParams(TaskParams):
    """``tasks/update``: answers keyed as the task's ``inputRequests``."""

    input_responses: dict[str, Any]


@dataclass
class _Run:
    """One task-capable call while it runs; the tool finds it through ``_current``."""

    owner: Owner
    detached: asyncio.Event = field(default_factory=asyncio.Event)
    task: TaskRecord | None = None


_current: contextvars.ContextVar[_Run | None] = contextvars.ContextVar(
    "atrium_task_run", default=None
)


class Tasks(Extension):
    """The tasks extension for one server: pass it in ``extensions=[...]``."""

    identifier = EXTENSION

    def __init__(
        self,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS,
        max_tasks: int = DEFAULT_MAX_TASKS,
    ) -> None:
        """``ttl_ms``: how long a task is kept after its creation; ``poll_interval_ms``: how
        often clients should poll; ``max_tasks``: past it, calls answer without a task."""
        if ttl_ms <= 0 or poll_interval_ms <= 0 or max_tasks <= 0:
            raise ValueError("ttl_ms, poll_interval_ms and max_tasks must be positive")
        self.store = TaskStore(ttl_ms, poll_interval_ms, max_tasks)
        self._support: dict[str, Support] = {}

    def tool(
        self,
        server: MCPServer[Any],
        *,
        support: Support = "optional",
        name: str | None = None,
        **options: Any,
    ) -> Callable[[ToolFunction], ToolFunction]:
        """``server.tool(name=..., **options)`` for a tool that may run as a task."""

        def register(function: ToolFunction) -> ToolFunction:
            server.tool(name=name, **options)(function)
            self._support[name or function.__name__] = support
            return function

        return register

    async def detach(self, status_message: str | None = None) -> bool:
        """From now on the call runs as a task, and the caller gets its handle. ``False``
        when it cannot (the caller did not negotiate tasks, or ``max_tasks`` are running):
        the tool goes on and the caller waits for its result as for any tool."""
        run = _current.get()
        if run is None:
            return False
        if run.task is None:
            task = self.store.create(run.owner)
            if task is None:
                return False
            task.status_message = status_message
            run.task = task
            run.detached.set()
            await asyncio.sleep(0)  # the handle goes out before the tool goes on
        return True

    async def ask(self, requests: Mapping[str, InputRequest]) -> dict[str, Any]:
        """Ask the client (elicitation, sampling, roots) from a detached tool; the answers by
        key, as the client sent them. Each key may be used once in a task's life."""
        run = _current.get()
        if run is None or run.task is None:
            raise RuntimeError("ask() is for a tool running as a task: detach() first")
        return await run.task.ask(requests)

    # -- the extension ------------------------------------------------------------------------

    def methods(self) -> Sequence[MethodBinding]:
        versions = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [
            MethodBinding("tasks/get", TaskParams, self._get, versions),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, versions),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, versions),
        ]

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        support = self._support.get(params.name)
        if support is None:
            return await call_next(ctx)
        if not _negotiated(ctx):
            if support == "required":
                raise _missing_capability()
            return await call_next(ctx)
        return await self._run(ctx, call_next)

    async def _run(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Run the tool in a task of its own, so that it can outlive this request: the
        result when it ends before detaching, else the task's handle."""
        run = _Run(_owner(ctx))
        context = contextvars.copy_context()
        context.run(_current.set, run)
        work: asyncio.Task[HandlerResult] = asyncio.create_task(
            _call(call_next, ctx), context=context
        )
        detached = asyncio.ensure_future(run.detached.wait())
        try:
            await asyncio.wait({work, detached}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()  # the caller left before the tool detached: nobody wants it
            raise
        finally:
            detached.cancel()
        if run.task is None:
            return await work
        run.task.work = work
        work.add_done_callback(run.task.finish)
        return run.task.created()

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        return self._find(ctx, params).detailed()

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> dict[str, Any]:
        self._find(ctx, params).answer(params.input_responses)
        return {}

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> dict[str, Any]:
        self._find(ctx, params).cancel()
        return {}

    def _find(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> TaskRecord:
        # SEP-2663: a caller that did not negotiate the extension gets -32021, whatever the id.
        if not _negotiated(ctx):
            raise _missing_capability()
        return self.store.find(params.task_id, _owner(ctx))


async def _call(
    call_next: Callable[[ServerRequestContext[Any, Any]], Awaitable[HandlerResult]],
    ctx: ServerRequestContext[Any, Any],
) -> HandlerResult:
    return await call_next(ctx)


def _negotiated(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client listed the extension (2026-07-28 only: the extension
    rides that revision's per-request capabilities)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    extensions = capabilities.extensions if capabilities is not None else None
    return extensions is not None and EXTENSION in extensions


def _missing_capability() -> MCPError:
    data = MissingRequiredClientCapabilityErrorData(
        required_capabilities=ClientCapabilities(extensions={EXTENSION: {}})
    )
    return MCPError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"Missing required client capability: the {EXTENSION} extension",
        data.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


def _owner(ctx: ServerRequestContext[Any, Any]) -> Owner:
    """Who calls, as the gateway vouched (``atrium.servers.trust``); anonymous otherwise."""
    request = ctx.request
    identity = getattr(request, "scope", {}).get(SCOPE_KEY) if request is not None else None
    if isinstance(identity, CallerIdentity):
        return (identity.subject, identity.client_id)
    return (None, None)
