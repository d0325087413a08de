"""Agents in ``services/agents/<name>.md``: frontmatter, prompt, errors, and their model."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from atrium.ai.agents import Agent, load_agent, load_agents, resolve_model
from atrium.ai.config import AiConfig, ProviderConfig
from atrium.errors import ConfigError, NotFoundError, Problem
from atrium.settings import Settings, load_settings

TRIAGE = """\
    ---
    name: triage
    description: Sorts new issues
    model: claude:claude-sonnet-4-5
    allowed-tools: [mcp__github__get_issue, "mcp__asana__*"]
    servers: [github, asana]
    skills: [summarize]
    color: blue
    ---
    You sort new issues.

    Ask nothing; act.
    """


def project(tmp_path: Path, **agents: str) -> Settings:
    folder = tmp_path / "services/agents"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in agents.items():
        (folder / f"{name}.md").write_text(dedent(text))
    return load_settings(tmp_path, environ={})


def only_problem(settings: Settings) -> Problem:
    with pytest.raises(ConfigError) as caught:
        load_agents(settings)
    assert len(caught.value.problems) == 1, caught.value
    return caught.value.problems[0]


def config(default_provider: str | None = None, default_model: str | None = None) -> AiConfig:
    providers = {
        "claude": ProviderConfig(type="anthropic"),
        "local": ProviderConfig(type="openai-chat", base_url="http://127.0.0.1:8000/v1"),
    }
    return AiConfig(
        providers=providers, default_provider=default_provider, default_model=default_model
    )


def agent(model: str) -> Agent:
    return Agent("a", "", model, None, None, (), None, "", "services/agents/a.md", 4)


def test_an_agent_file_loads_with_its_frontmatter_and_prompt(tmp_path: Path) -> None:
    settings = project(tmp_path, triage=TRIAGE)

    triage = load_agents(settings)["triage"]

    assert triage.description == "Sorts new issues"
    assert triage.model == "claude:claude-sonnet-4-5"
    assert triage.allowed_tools == ("mcp__github__get_issue", "mcp__asana__*")
    assert triage.servers == ("github", "asana")
    assert triage.skills == ("summarize",)
    assert triage.color == "blue"
    assert triage.prompt == "You sort new issues.\n\nAsk nothing; act."
    assert triage.source == "services/agents/triage.md"
    assert load_agent(settings, "triage") == triage


def test_allowed_tools_and_servers_narrow_what_the_agent_sees(tmp_path: Path) -> None:
    triage = load_agent(project(tmp_path, triage=TRIAGE), "triage")

    assert triage.tools.allows("mcp__asana__create_task")
    assert triage.tools.allows("mcp__github__get_issue")
    assert not triage.tools.allows("mcp__github__delete_repo")
    assert triage.uses_server("asana")
    assert not triage.uses_server("slack")


def test_an_agent_without_lists_sees_everything_and_inherits_its_model(tmp_path: Path) -> None:
    settings = project(tmp_path, helper="---\nname: helper\n---\nHelp.\n")

    helper = load_agent(settings, "helper")

    assert helper.model == "inherit"
    assert helper.tools.allows("mcp__anything__at_all")
    assert helper.uses_server("anything")


def test_no_agents_folder_is_no_agents(tmp_path: Path) -> None:
    assert load_agents(load_settings(tmp_path, environ={})) == {}


def test_an_unknown_agent_lists_the_known_ones(tmp_path: Path) -> None:
    settings = project(tmp_path, triage=TRIAGE)

    with pytest.raises(NotFoundError) as caught:
        load_agent(settings, "triag")

    assert caught.value.known == ("triage",)


def test_an_agent_name_is_never_a_path(tmp_path: Path) -> None:
    settings = project(tmp_path, triage=TRIAGE)
    (tmp_path / "services/outside.md").write_text("---\nname: outside\n---\n")

    with pytest.raises(NotFoundError):
        load_agent(settings, "../outside")


def test_an_unknown_key_is_refused_with_its_line_in_the_md_file(tmp_path: Path) -> None:
    text = "---\nname: a\ndescription: x\ntools: [Read]\n---\nHi\n"

    problem = only_problem(project(tmp_path, a=text))

    assert (problem.source, problem.line, problem.key_path) == ("services/agents/a.md", 4, "tools")


def test_a_value_of_the_wrong_type_is_refused_with_its_line(tmp_path: Path) -> None:
    text = "---\nname: a\nallowed-tools: mcp__x__y\n---\nHi\n"

    problem = only_problem(project(tmp_path, a=text))

    assert (problem.line, problem.key_path) == (3, "allowed-tools")


def test_an_invalid_glob_is_refused_with_its_line(tmp_path: Path) -> None:
    text = '---\nname: a\nallowed-tools:\n  - mcp__x__y\n  - "mcp__x__[oops"\n---\nHi\n'

    problem = only_problem(project(tmp_path, a=text))

    assert (problem.line, problem.key_path) == (5, "allowed-tools[1]")


def test_the_name_must_match_the_file_name(tmp_path: Path) -> None:
    problem = only_problem(project(tmp_path, a="---\ndescription: x\nname: b\n---\nHi\n"))

    assert (problem.source, problem.line, problem.key_path) == ("services/agents/a.md", 3, "name")


def test_the_name_is_required(tmp_path: Path) -> None:
    problem = only_problem(project(tmp_path, a="---\ndescription: x\n---\nHi\n"))

    assert problem.key_path == "name"


def test_a_file_without_frontmatter_is_refused(tmp_path: Path) -> None:
    problem = only_problem(project(tmp_path, a="You are an agent.\n"))

    assert (problem.source, problem.line) == ("services/agents/a.md", 1)


def test_unterminated_frontmatter_is_refused(tmp_path: Path) -> None:
    problem = only_problem(project(tmp_path, a="---\nname: a\nmodel: inherit\nHi\n"))

    assert (problem.source, problem.line) == ("services/agents/a.md", 1)
    assert "---" in problem.message


def test_malformed_frontmatter_yaml_names_its_line_in_the_md_file(tmp_path: Path) -> None:
    problem = only_problem(project(tmp_path, a="---\nname: a\nmodel: x: y\n---\nHi\n"))

    assert (problem.source, problem.line) == ("services/agents/a.md", 3)


def test_every_bad_file_is_reported_at_once(tmp_path: Path) -> None:
    settings = project(tmp_path, a="no frontmatter\n", b="---\nname: c\n---\n", triage=TRIAGE)

    with pytest.raises(ConfigError) as caught:
        load_agents(settings)

    assert [p.source for p in caught.value.problems] == [
        "services/agents/a.md",
        "services/agents/b.md",
    ]


def test_inherit_is_the_default_provider_and_model() -> None:
    assert resolve_model(agent("inherit"), config("local", "llama3.1")) == ("local", "llama3.1")


def test_a_bare_model_name_runs_on_the_default_provider() -> None:
    assert resolve_model(agent("qwen2.5"), config("local")) == ("local", "qwen2.5")
    assert resolve_model(agent("Qwen/Qwen2.5:7b"), config("local")) == ("local", "Qwen/Qwen2.5:7b")


def test_provider_colon_model_picks_the_provider() -> None:
    assert resolve_model(agent("claude:claude-sonnet-4-5"), config()) == (
        "claude",
        "claude-sonnet-4-5",
    )
    # The model's own colons stay in the model name (Ollama's tags).
    assert resolve_model(agent("local:llama3:8b"), config()) == ("local", "llama3:8b")


def test_a_model_naming_an_unknown_provider_names_the_agent_file_and_key() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_model(agent("openai:gpt-5"), config("local", "x"))

    [problem] = caught.value.problems
    assert (problem.source, problem.line, problem.key_path) == ("services/agents/a.md", 4, "model")
    assert "openai" in problem.message


def test_inherit_without_a_default_model_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_model(agent("inherit"), config("local"))

    [problem] = caught.value.problems
    assert (problem.source, problem.key_path) == ("services/agents/a.md", "model")
    assert "default_model" in problem.message


def test_no_provider_at_all_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_model(agent("gpt-5"), AiConfig())

    assert "ai.providers" in caught.value.problems[0].message


def test_a_bare_model_with_several_providers_and_no_default_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_model(agent("gpt-5"), config())

    assert "default_provider" in caught.value.problems[0].message


def test_a_model_line_from_a_real_file_is_reported(tmp_path: Path) -> None:
    settings = project(tmp_path, a="---\nname: a\ndescription: d\nmodel: nope:m\n---\nHi\n")

    with pytest.raises(ConfigError) as caught:
        resolve_model(load_agent(settings, "a"), config())

    assert caught.value.problems[0].line == 4
