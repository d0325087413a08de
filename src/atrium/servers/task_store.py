"""The tasks a server is running or has finished, as the tasks extension shows them (SEP-2663).

A ``TaskRecord`` is one task's state machine: ``working`` ⇄ ``input_required`` → ``completed``,
``failed`` or ``cancelled`` (terminal). ``detailed()`` is its ``DetailedTask``, the answer to
``tasks/get``: the tool's result inlined once ``completed`` (an ``isError`` result included),
the JSON-RPC error once ``failed``, the outstanding ``inputRequests`` while ``input_required``;
never ``requestState`` (SEP-2663 has none). ``created()`` is the flat ``CreateTaskResult``
(``resultType: "task"``) that answers the ``tools/call``.

``TaskStore`` keeps them in memory: a task lives ``ttl_ms`` from its creation (never less,
SEP-2663 "Task Polling"), at most ``max_tasks`` at once, and belongs to the caller that
created it (whoever else names it finds nothing, as for an id never issued). Ids are 128 random
bits: unguessable, as the extension requires of ids that act as bearer tokens.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, InputRequest, InputRequiredResult

Status = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL: frozenset[Status] = frozenset({"completed", "failed", "cancelled"})
Owner = tuple[str | None, str | None]  # (subject, client_id) of the caller, as the gateway vouched

DEFAULT_TTL_MS = 3_600_000
DEFAULT_POLL_INTERVAL_MS = 1_000
DEFAULT_MAX_TASKS = 1_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _wire(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


@dataclass(eq=False)
class TaskRecord:
    """One task. Changed only by the tool that runs it (``ask``, ``finish``) and by
    ``tasks/update`` and ``tasks/cancel`` (``answer``, ``cancel``)."""

    task_id: str
    owner: Owner
    ttl_ms: int
    poll_interval_ms: int
    status: Status = "working"
    status_message: str | None = None
    created_at: str = field(default_factory=_now)
    last_updated_at: str = ""
    expires: float = 0.0  # time.monotonic() after which the task may be forgotten
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    work: asyncio.Task[Any] | None = None
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    _answers: dict[str, Any] = field(default_factory=dict)
    _asked: set[str] = field(default_factory=set)  # every key ever issued (SEP-2663: unique)
    _answered: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.last_updated_at = self.last_updated_at or self.created_at
        self.expires = self.expires or time.monotonic() + self.ttl_ms / 1000

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
            "ttlMs": self.ttl_ms,
            "pollIntervalMs": self.poll_interval_ms,
        }
        if self.status_message is not None:
            info["statusMessage"] = self.status_message
        return info

    def created(self) -> dict[str, Any]:
        """The ``CreateTaskResult``: the task's seed state, flat, ``resultType: "task"``."""
        return {"resultType": "task", **self._info()}

    def detailed(self) -> dict[str, Any]:
        """The ``DetailedTask`` for this status (``tasks/get``)."""
        detailed = self._info()
        if self.status == "input_required":
            detailed["inputRequests"] = dict(self._pending)
        elif self.status == "completed":
            detailed["result"] = self.result
        elif self.status == "failed":
            detailed["error"] = self.error
        return detailed

    def _set(self, status: Status, message: str | None = None) -> None:
        self.status, self.status_message = status, message
        self.last_updated_at = _now()

    # -- the tool's side ------------------------------------------------------------------

    async def ask(self, requests: Mapping[str, InputRequest]) -> dict[str, Any]:
        """Park the task as ``input_required`` until every request is answered; the answers,
        by key, as the client sent them. A key serves once in a task's life (SEP-2663)."""
        if not requests:
            raise ValueError("ask() needs at least one input request")
        reused = sorted(set(requests) & self._asked)
        if reused:
            raise ValueError(f"input request keys are used once per task; again: {reused}")
        if self.terminal:
            raise RuntimeError(f"task {self.task_id} is {self.status}")
        self._asked |= set(requests)
        self._pending = {key: _wire(request) for key, request in requests.items()}
        self._answers = {}
        self._answered.clear()
        self._set("input_required")
        try:
            await self._answered.wait()
        finally:
            self._pending = {}
        if not self.terminal:
            self._set("working")
        return dict(self._answers)

    def finish(self, outcome: asyncio.Task[Any]) -> None:
        """Record how the tool's run ended (a done callback of ``work``)."""
        if self.terminal:
            return
        if outcome.cancelled():
            self._set("cancelled", "The task was cancelled.")
            return
        failure = outcome.exception()
        if isinstance(failure, MCPError):
            self.error = _wire(failure.error)
            self._set("failed", failure.message)
        elif failure is not None:
            self.error = {"code": -32603, "message": "Internal error"}
            self._set("failed", "The tool failed unexpectedly.")
        elif isinstance(outcome.result(), InputRequiredResult):
            self.error = {"code": -32603, "message": "A task asks with ask(), not a result"}
            self._set("failed", "The tool answered a task with an input request.")
        else:
            result = outcome.result()
            self.result = dict(result) if isinstance(result, Mapping) else _wire(result)
            self._set("completed")

    # -- the client's side ----------------------------------------------------------------

    def answer(self, responses: Mapping[str, Any]) -> None:
        """``tasks/update``: keep the answers to outstanding requests, ignore the rest; the
        task resumes once nothing is outstanding, and stays ``input_required`` until then."""
        for key, response in responses.items():
            if key in self._pending:
                self._answers[key] = response
                del self._pending[key]
        if self.status == "input_required":
            if self._pending:
                self.last_updated_at = _now()
            else:
                self._answered.set()

    def cancel(self) -> None:
        """``tasks/cancel``: stop the work; a terminal task stays as it is (idempotent)."""
        if self.terminal:
            return
        if self.work is not None and not self.work.done():
            self.work.cancel()
        else:
            self._set("cancelled", "The task was cancelled.")


@dataclass
class TaskStore:
    """The tasks of one server process, bounded in number and in time."""

    ttl_ms: int = DEFAULT_TTL_MS
    poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS
    max_tasks: int = DEFAULT_MAX_TASKS
    _tasks: OrderedDict[str, TaskRecord] = field(default_factory=OrderedDict)

    def create(self, owner: Owner) -> TaskRecord | None:
        """A new ``working`` task, stored before anyone learns its id; ``None`` when
        ``max_tasks`` are running (the call then answers without a task)."""
        self._forget_expired()
        if len(self._tasks) >= self.max_tasks and not self._drop_oldest_finished():
            return None
        task = TaskRecord(secrets.token_urlsafe(16), owner, self.ttl_ms, self.poll_interval_ms)
        self._tasks[task.task_id] = task
        return task

    def find(self, task_id: str, owner: Owner) -> TaskRecord:
        """The caller's task, or -32602 as for an unknown id (SEP-2663, "Error Handling")."""
        self._forget_expired()
        task = self._tasks.get(task_id)
        if task is None or task.owner != owner:
            raise MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found")
        return task

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for task_id in [i for i, t in self._tasks.items() if t.expires < now]:
            task = self._tasks.pop(task_id)
            task.cancel()

    def _drop_oldest_finished(self) -> bool:
        oldest = next((i for i, t in self._tasks.items() if t.terminal), None)
        if oldest is None:
            return False
        del self._tasks[oldest]
        return True
