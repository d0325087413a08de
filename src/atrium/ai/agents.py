"""Agents: ``services/agents/<name>.md``, in the format of seed 004.

```markdown
---
name: triage                          # must be the file's name
description: Sorts new issues
model: inherit                        # inherit | <model> | <provider>:<model>
allowed-tools: [mcp__github__get_issue, "mcp__asana__*"]   # exact names and globs; all if absent
servers: [github, asana]              # only these servers' tools; all if absent
skills: [pdf-tools]                   # skills of the marketplace, added to the prompt
color: blue                           # shown by clients (seed 004's example has it)
---
You sort new issues ...               # the system prompt
```

Errors name the file, the line (counted in the ``.md`` file) and the key. Which provider a
model means is only known with the AI configuration at hand: ``resolve_model``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from atrium import yamlio
from atrium.ai.config import AI_CONFIG_FILE, AiConfig
from atrium.client.naming import AllowedTools
from atrium.errors import ConfigError, NotFoundError, Problem, display_path, each_checked
from atrium.registry.loader import validation_problems
from atrium.registry.schema import SERVER_NAME, Glob, ServerName
from atrium.settings import Settings

AGENTS_DIR = "services/agents"
INHERIT = "inherit"
_FENCE = "---"


def _agent_name(name: str) -> str:
    # The name is the file's name and appears in URLs (/api/v1/agents/{name}/messages).
    if not SERVER_NAME.match(name):
        raise ValueError(
            f"agent name {name!r} must be lowercase letters, digits and '-' (at most 64),"
            " starting and ending with a letter or digit"
        )
    return name


def _model_name(model: str) -> str:
    if model != model.strip() or any(char.isspace() for char in model):
        raise ValueError(f"model {model!r} contains white space")
    if model.endswith(":"):
        raise ValueError(f"model {model!r} names no model after the provider")
    return model


class AgentFrontmatter(BaseModel):
    """The YAML between the ``---`` lines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, AfterValidator(_agent_name)]
    description: str = ""
    model: Annotated[str, Field(min_length=1), AfterValidator(_model_name)] = INHERIT
    allowed_tools: tuple[Glob, ...] | None = Field(default=None, alias="allowed-tools")
    servers: tuple[ServerName, ...] | None = None
    skills: tuple[str, ...] = ()
    color: str | None = None


@dataclass(frozen=True)
class Agent:
    """A validated agent file; ``prompt`` is its body, the system prompt."""

    name: str
    description: str
    model: str
    allowed_tools: tuple[str, ...] | None
    servers: tuple[str, ...] | None
    skills: tuple[str, ...]
    color: str | None
    prompt: str
    source: str
    model_line: int | None = None
    skills_line: int | None = None

    @property
    def tools(self) -> AllowedTools:
        """The ``allowed-tools`` filter over the names a model sees (``mcp__server__tool``)."""
        return AllowedTools.of(self.allowed_tools)

    def uses_server(self, server: str) -> bool:
        return self.servers is None or server in self.servers


def agent_files(settings: Settings) -> list[Path]:
    directory = settings.project_dir / AGENTS_DIR
    return sorted(directory.glob("*.md")) if directory.is_dir() else []


def load_agents(settings: Settings) -> dict[str, Agent]:
    """Every agent by name; ``ConfigError`` lists the problems of every file at once."""
    files = agent_files(settings)
    agents = each_checked([partial(_load_file, path, settings) for path in files])
    return {agent.name: agent for agent in agents}


def load_agent(settings: Settings, name: str) -> Agent:
    """One agent; ``NotFoundError`` lists the known ones. Other agents' files are not read."""
    path = settings.project_dir / AGENTS_DIR / f"{name}.md"
    if not SERVER_NAME.match(name) or not path.is_file():
        raise NotFoundError("agent", name, [path.stem for path in agent_files(settings)])
    return _load_file(path, settings)


def _load_file(path: Path, settings: Settings) -> Agent:
    shown = display_path(path, settings.project_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(shown, f"cannot read the file: {exc}")]) from None
    header, prompt = split_frontmatter(text, shown)
    document = _parse_header(header, shown)
    try:
        front = AgentFrontmatter.model_validate(document)
    except ValidationError as exc:
        problems = validation_problems(exc, shown, document)
        raise ConfigError([_below_fence(problem) for problem in problems]) from None
    if front.name != path.stem:
        line = _line_of(document, "name")
        message = f"name '{front.name}' must match the file name '{path.name}'"
        raise ConfigError([Problem(shown, message, key_path="name", line=line)])
    return Agent(
        name=front.name,
        description=front.description,
        model=front.model,
        allowed_tools=front.allowed_tools,
        servers=front.servers,
        skills=front.skills,
        color=front.color,
        prompt=prompt.strip(),
        source=shown,
        model_line=_line_of(document, "model"),
        skills_line=_line_of(document, "skills"),
    )


def split_frontmatter(text: str, shown: str) -> tuple[str, str]:
    """The YAML between the opening and closing ``---`` lines, and the text after them."""
    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].rstrip() != _FENCE:
        raise ConfigError(
            [
                Problem(
                    shown,
                    "no frontmatter: an agent file starts with a '---' line, then name,"
                    " description and model, then '---' and the system prompt",
                    line=1,
                )
            ]
        )
    for index in range(1, len(lines)):
        if lines[index].rstrip() == _FENCE:
            return "".join(lines[1:index]), "".join(lines[index + 1 :])
    message = "the frontmatter opened on line 1 is never closed by a '---' line"
    raise ConfigError([Problem(shown, message, line=1)])


def _parse_header(header: str, shown: str) -> Any:
    try:
        document = yamlio.loads(header, shown)
    except yamlio.YamlSyntaxError as exc:
        raise ConfigError([_below_fence(exc.problem)]) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        message = "the frontmatter must be keys and values (name, description, model, ...)"
        raise ConfigError([Problem(shown, message, line=2)])
    return document


def _below_fence(problem: Problem) -> Problem:
    # The YAML starts on the file's second line, after the opening '---'.
    if problem.line is None:
        return problem
    return dataclasses.replace(problem, line=problem.line + 1)


def _line_of(document: Any, key: str) -> int | None:
    where = yamlio.position(document, (key,))
    return where[0] + 1 if where else None


def resolve_model(agent: Agent, config: AiConfig) -> tuple[str, str]:
    """``(provider, model)`` of the agent's ``model``; a ``ConfigError`` names the agent's file.

    ``inherit`` is the configured default provider and model; a bare model name runs on the
    default provider; ``<provider>:<model>`` must name a configured provider. A prefix that is
    not a possible provider name (``Qwen/Qwen2.5:7b``) is part of a bare model name.
    """
    if agent.model == INHERIT:
        provider = _default_provider(agent, config)
        if config.default_model is None:
            raise _model_error(
                agent, f"'inherit' needs default_model in {AI_CONFIG_FILE}, which is not set"
            )
        return provider, config.default_model
    prefix, colon, model = agent.model.partition(":")
    if colon and SERVER_NAME.match(prefix):
        if prefix not in config.providers:
            known = ", ".join(sorted(config.providers)) or "none"
            raise _model_error(
                agent,
                f"'{prefix}' is not a provider of {AI_CONFIG_FILE} (configured: {known});"
                f" a model name with ':' is written <provider>:<model>",
            )
        return prefix, model
    return _default_provider(agent, config), agent.model


def _default_provider(agent: Agent, config: AiConfig) -> str:
    provider = config.provider_name
    if provider is not None:
        return provider
    if not config.providers:
        message = f"no AI provider is configured: add one under ai.providers in {AI_CONFIG_FILE}"
    else:
        message = (
            f"'{agent.model}' names no provider and {AI_CONFIG_FILE} sets no default_provider:"
            " write <provider>:<model> or set default_provider"
        )
    raise _model_error(agent, message)


def _model_error(agent: Agent, message: str) -> ConfigError:
    return ConfigError([Problem(agent.source, message, key_path="model", line=agent.model_line)])
