"""The AI service: an agent's run from its name and a message to a stream of events.

``AgentService.start`` does everything that can fail for a reason the user must fix before
any event is sent: the agent and ``services/ai/config.yaml`` are loaded, the model resolved,
the provider created (its SDK and key checked), the conversation found (and owned by the
caller), and the servers connected and their tools listed. A problem there raises
(``ConfigError``, ``ProviderSetupError``, ``NotFoundError``, ``UsageError``), so the CLI exits
2 and the HTTP API answers 4xx. What it yields is the run's event stream (``run_events``):
the conversation's messages are stored as they happen, so a stopped run keeps what it did.
A model API that fails mid-run ends the stream with ``failed`` (``provider``).

Faces: ``atrium agents run`` (CLI), ``POST /api/v1/agents/{name}/messages`` (HTTP, SSE) and
the ``atrium`` server's ``run_agent`` tool, each with its own ``RunAs``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from atrium.ai.agents import Agent, load_agent, load_agents, resolve_model, split_frontmatter
from atrium.ai.config import AiConfig, load_ai_config, resolve_api_key
from atrium.ai.discovery import Discovered, RunAs, auth_for, discover
from atrium.ai.errors import ConversationBusy
from atrium.ai.loop import Conversation, Limits, Recorded, tool_loop
from atrium.ai.providers import create_provider
from atrium.ai.providers.messages import Message, UserMessage
from atrium.ai.providers.provider import Provider, ProviderError
from atrium.ai.run_events import RunEvent, RunFailed, RunStarted
from atrium.ai.transcript import from_stored, to_stored
from atrium.client.manager import AuthFor, McpManager
from atrium.errors import AtriumError, ConfigError, NotFoundError, Problem, UsageError
from atrium.settings import Settings
from atrium.store import SkillRecord, Store
from atrium.store.conversations import ConversationRecord, UnknownConversation

logger = logging.getLogger(__name__)

# How deep agents may run inside agents (``run_agent`` from an agent's run): a run at this depth
# is refused, so an agent that calls itself stops after a few levels, not at the rate limit.
MAX_AGENT_DEPTH = 3
# The ``_meta`` key of the tool calls an agent makes: how deep the calling run is, plus one.
DEPTH_META = "dev.atrium/agent-depth"
MAX_MESSAGE_CHARS = 100_000


class ConversationNotFound(NotFoundError):
    def __init__(self, conversation_id: str) -> None:
        super().__init__("conversation", conversation_id, [])
        self.args = (f"conversation '{conversation_id}' not found among yours",)


@dataclass(frozen=True)
class RunPlan:
    """What ``start`` resolved: shown by ``atrium agents show`` without running anything."""

    agent: Agent
    config: AiConfig
    provider_name: str
    model: str
    discovered: Discovered
    skills: tuple[SkillRecord, ...] = ()

    @property
    def system(self) -> str:
        """The agent's prompt, then each of its skills under a heading of its own."""
        if not self.skills:
            return self.agent.prompt
        parts = [self.agent.prompt, "# Skills"]
        for skill in self.skills:
            _, body = split_frontmatter(skill.content, f"skill {skill.name}")
            parts.append(f"## Skill: {skill.name}\n\n{skill.description}\n\n{body.strip()}")
        return "\n\n".join(parts)


class AgentService:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def agents(self) -> list[Agent]:
        return list(load_agents(self.settings).values())

    async def plan(self, name: str, run_as: RunAs) -> RunPlan:
        """The agent, its model and its servers as ``run_as`` would run it."""
        agent = load_agent(self.settings, name)
        config = load_ai_config(self.settings)
        provider_name, model = resolve_model(agent, config)
        skills = await self.skills(agent, run_as)
        records = await self.store.servers.list() if config.auto_discover else []
        discovered = discover(self.settings, config, agent, run_as, records)
        return RunPlan(agent, config, provider_name, model, discovered, skills)

    async def skills(self, agent: Agent, run_as: RunAs) -> tuple[SkillRecord, ...]:
        """The skills ``agent``'s ``skills:`` names: ``run_as``'s own skill of each name, never
        one another user shared. A skill's body is instructions the model follows with
        ``run_as``'s scopes, and anyone can share a skill under any name, so loading shared
        ones would let one user steer another's agents (prompt injection). A name that is not
        the user's own is a ``ConfigError`` naming the agent file's ``skills`` key, before
        anything runs."""
        found = {name: await self.store.skills.get(run_as.subject, name) for name in agent.skills}
        missing = [name for name, record in found.items() if record is None]
        if missing:
            message = (
                f"{', '.join(missing)}: not a skill of {run_as.subject}'s own; an agent loads"
                " only its user's own skills, never one shared by someone else (create_skill"
                " on the marketplace server adds one; copy a shared one to make it yours)"
            )
            problem = Problem(agent.source, message, key_path="skills", line=agent.skills_line)
            raise ConfigError([problem])
        return tuple(record for record in found.values() if record is not None)

    def provider(self, plan: RunPlan) -> Provider:
        """The plan's provider, created now: ``ProviderSetupError`` names what is missing."""
        config = plan.config.providers[plan.provider_name]
        return create_provider(
            config.type,
            api_key=resolve_api_key(plan.config, plan.provider_name, self.settings),
            base_url=config.base_url,
            timeout_s=plan.config.timeout_for(plan.provider_name),
            max_retries=config.max_retries,
            name=plan.provider_name,
        )

    async def conversation(self, conversation_id: str, run_as: RunAs) -> ConversationRecord:
        """A conversation of ``run_as``'s; someone else's is not found, as one that is not."""
        if len(conversation_id) > 64 or "\x00" in conversation_id:  # no id of ours: not found
            raise ConversationNotFound(conversation_id[:64])
        record = await self.store.conversations.get(conversation_id)
        if record is None or record.subject != run_as.subject:
            raise ConversationNotFound(conversation_id)
        return record

    @contextlib.asynccontextmanager
    async def start(
        self,
        name: str,
        message: str,
        run_as: RunAs,
        conversation_id: str | None = None,
    ) -> AsyncIterator[AsyncGenerator[RunEvent, None]]:
        """See the module docstring: ``async with service.start(...) as events``."""
        _check_message(message)
        if run_as.depth >= MAX_AGENT_DEPTH:
            raise UsageError(
                f"agents may run inside agents {MAX_AGENT_DEPTH - 1} levels deep at most;"
                f" this run would be level {run_as.depth + 1}"
            )
        plan = await self.plan(name, run_as)
        record = None
        if conversation_id is not None:
            record = await self.conversation(conversation_id, run_as)
            if record.agent != plan.agent.name:
                raise UsageError(
                    f"conversation '{conversation_id}' is with agent '{record.agent}',"
                    f" not '{plan.agent.name}'"
                )
        if record is not None:
            _hold(record.id)  # one run at a time continues a conversation (in this process)
        try:
            provider = self.provider(plan)
        except BaseException:
            if record is not None:
                _RUNNING.discard(record.id)
            raise
        try:
            manager = McpManager(
                plan.discovered.specs,
                log_dir=self.settings.logs_dir,
                allowed=plan.agent.tools,
                auth_for=self.auth_for(run_as),
                call_meta={DEPTH_META: run_as.depth + 1},
                # The loop's own limit (``tool_call_s``) decides; the link's must not cut first.
                call_timeout_s=plan.config.timeouts.tool_call_s + 5,
            )
            async with manager:
                tools = await manager.provider_tools(provider.tool_format)
                run = _Run(self, plan, provider, manager, tools, run_as)
                # Closed on leaving the block, even unread to its end: its tool calls stop.
                async with contextlib.aclosing(run.events(message, record)) as events:
                    yield events
        finally:
            if record is not None:
                _RUNNING.discard(record.id)
            await provider.aclose()

    def auth_for(self, run_as: RunAs) -> AuthFor:
        """How ``run_as``'s run signs its calls to the registry's servers (``RunAuth``)."""
        return auth_for(self.settings, run_as, functools.partial(self._vet, run_as))

    async def _vet(self, run_as: RunAs) -> None:
        """Refuse new tokens to a run whose user was revoked or disabled since it started
        (``RunAuth``): its user's tokens end at the next request, its own must too."""
        revoked = (await self.store.grants.active_subject_revocations()).get(run_as.subject)
        user = await self.store.users.get(run_as.subject)
        if (revoked is not None and revoked.timestamp() >= run_as.since) or (
            user is not None and user.disabled
        ):
            raise AtriumError("the run's user may no longer call tools (revoked or disabled)")


@dataclass
class _Run:
    service: AgentService
    plan: RunPlan
    provider: Provider
    manager: McpManager
    tools: list[dict[str, Any]]
    run_as: RunAs

    async def events(
        self, message: str, record: ConversationRecord | None
    ) -> AsyncGenerator[RunEvent, None]:
        store = self.service.store.conversations
        if record is None:
            record = await store.create(
                subject=self.run_as.subject, agent=self.plan.agent.name, title=message
            )
            history: list[Message] = []
        else:
            history = from_stored(await store.messages(record.id))
        history.append(UserMessage(message))
        try:
            await store.append(record.id, [to_stored(history[-1])])
        except UnknownConversation:
            yield RunFailed(record.id, "the conversation was deleted", "cancelled")
            return
        names = tuple(_tool_name(tool) for tool in self.tools)
        servers = {status.name: status.error for status in self.manager.status()}
        yield RunStarted(
            record.id, self.plan.agent.name, self.plan.provider_name, self.plan.model,
            names, servers,
        )  # fmt: skip
        conversation = Conversation(
            conversation_id=record.id,
            provider=self.provider,
            model=self.plan.model,
            system=self.plan.system,
            history=history,
            tools=self.tools,
            offered=frozenset(names),
        )
        config = self.plan.config
        limits = Limits(config.max_tool_rounds, config.timeouts.tool_call_s)
        try:
            async with contextlib.aclosing(
                tool_loop(conversation, self.manager.call, limits)
            ) as loop:
                async for event in loop:
                    if isinstance(event, Recorded):
                        usage = event.usage
                        stored = to_stored(
                            event.message,
                            input_tokens=usage.input_tokens if usage else None,
                            output_tokens=usage.output_tokens if usage else None,
                        )
                        await store.append(record.id, [stored])
                    else:
                        yield event
        except ProviderError as exc:
            logger.warning("agent %s: %s", self.plan.agent.name, exc)
            yield RunFailed(record.id, str(exc), "provider")
        except UnknownConversation:
            yield RunFailed(record.id, "the conversation was deleted during the run", "cancelled")
        except Exception:  # a bug of ours: logged whole, the watcher told without a traceback
            logger.exception("agent %s: the run failed", self.plan.agent.name)
            yield RunFailed(record.id, "the run failed inside Atrium; its log has the details",
                            "internal")  # fmt: skip


# Conversations a run of this process is continuing: a second run of one would interleave its
# messages with the first's (the HTTP API answers 409, the CLI exits 2).
_RUNNING: set[str] = set()


def _hold(conversation_id: str) -> None:
    if conversation_id in _RUNNING:
        raise ConversationBusy(conversation_id)
    _RUNNING.add(conversation_id)


def _check_message(message: str) -> None:
    if not message.strip():
        raise UsageError("the message is empty: say what the agent should do")
    if "\x00" in message or any("\ud800" <= char <= "\udfff" for char in message):
        # A NUL or a lone surrogate (a byte that was not UTF-8) no database can store.
        raise UsageError("the message contains a NUL character or text that is not UTF-8")
    if len(message) > MAX_MESSAGE_CHARS:
        raise UsageError(
            f"the message is {len(message)} characters long; at most {MAX_MESSAGE_CHARS}"
        )


def _tool_name(tool: dict[str, Any]) -> str:
    """A tool's name in any provider's format (Chat Completions nests it in ``function``)."""
    function = tool.get("function")
    return str(function["name"] if isinstance(function, dict) else tool["name"])
