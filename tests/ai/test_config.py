"""``services/ai/config.yaml``: providers, defaults, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from atrium.ai.config import AiConfig, load_ai_config, resolve_api_key
from atrium.errors import ConfigError, Problem
from atrium.registry.schema import EnvRef, FileRef
from atrium.settings import Settings, load_settings

SOURCE = "services/ai/config.yaml"

GOOD = """\
    ai:
      providers:
        local:
          type: openai-chat
          base_url: http://localhost:11434/v1
          api_key: {$env: OPENAI_API_KEY}
        claude:
          type: anthropic
          api_key: {$file: secrets/anthropic.txt}
          timeout_s: 30
          max_retries: 5
      default_provider: local
      default_model: llama3.1
      auto_discover: false
      mcp_configs: [tools/.mcp.json]
      max_tool_rounds: 4
      timeouts: {model_request_s: 90, tool_call_s: 15}
    """


def write(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / SOURCE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))
    return load_settings(tmp_path, environ=environ or {})


def only_problem(settings: Settings) -> Problem:
    with pytest.raises(ConfigError) as caught:
        load_ai_config(settings)
    assert len(caught.value.problems) == 1, caught.value
    return caught.value.problems[0]


def test_a_full_file_loads_with_every_value(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools/.mcp.json").write_text('{"mcpServers": {}}')
    settings = write(tmp_path, GOOD)

    config = load_ai_config(settings)

    assert config.providers["local"].type == "openai-chat"
    assert config.providers["local"].base_url == "http://localhost:11434/v1"
    assert config.providers["local"].api_key == EnvRef(env="OPENAI_API_KEY")
    assert config.providers["claude"].api_key == FileRef(file="secrets/anthropic.txt")
    assert config.providers["claude"].max_retries == 5
    assert (config.provider_name, config.default_model) == ("local", "llama3.1")
    assert config.auto_discover is False
    assert config.mcp_config_paths(settings) == (tmp_path / "tools/.mcp.json",)
    assert config.max_tool_rounds == 4
    assert config.timeouts.tool_call_s == 15
    assert config.timeout_for("claude") == 30
    assert config.timeout_for("local") == 90


def test_a_missing_file_is_the_defaults_with_no_provider(tmp_path: Path) -> None:
    config = load_ai_config(load_settings(tmp_path, environ={}))

    assert config == AiConfig()
    assert config.providers == {}
    assert config.provider_name is None
    assert config.auto_discover is True
    assert config.max_tool_rounds == 10


def test_an_empty_file_and_an_empty_section_are_the_defaults(tmp_path: Path) -> None:
    assert load_ai_config(write(tmp_path, "# nothing yet\n")) == AiConfig()
    assert load_ai_config(write(tmp_path, "ai:\n  providers:\n")) == AiConfig()


def test_the_only_provider_is_the_default_provider(tmp_path: Path) -> None:
    settings = write(tmp_path, "ai:\n  providers:\n    gem: {type: gemini}\n")

    assert load_ai_config(settings).provider_name == "gem"


def test_an_unknown_key_is_refused_with_its_line(tmp_path: Path) -> None:
    settings = write(tmp_path, "ai:\n  auto_discover: true\n  max_rounds: 3\n")

    problem = only_problem(settings)

    assert (problem.source, problem.line, problem.key_path) == (SOURCE, 3, "ai.max_rounds")


def test_a_value_of_the_wrong_type_is_refused_with_its_line(tmp_path: Path) -> None:
    settings = write(tmp_path, "ai:\n  providers: {}\n  auto_discover: sometimes\n")

    problem = only_problem(settings)

    assert (problem.source, problem.line, problem.key_path) == (SOURCE, 3, "ai.auto_discover")


def test_a_literal_api_key_is_refused(tmp_path: Path) -> None:
    text = "ai:\n  providers:\n    openai:\n      type: openai\n      api_key: sk-abc123\n"

    problem = only_problem(write(tmp_path, text))

    assert (problem.line, problem.key_path) == (5, "ai.providers.openai.api_key")
    assert "$env" in problem.message
    assert "sk-abc123" not in str(problem)


def test_an_api_key_reference_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    text = "ai:\n  providers:\n    x:\n      type: openai\n      api_key: {$secret: KEY}\n"

    problem = only_problem(write(tmp_path, text))

    assert (problem.line, problem.key_path) == (5, "ai.providers.x.api_key")


def test_an_unknown_provider_type_is_refused(tmp_path: Path) -> None:
    text = "ai:\n  providers:\n    local:\n      type: mistral\n"

    problem = only_problem(write(tmp_path, text))

    assert (problem.line, problem.key_path) == (4, "ai.providers.local.type")


def test_a_base_url_must_be_http(tmp_path: Path) -> None:
    text = (
        "ai:\n  providers:\n    local:\n      type: openai-chat\n      base_url: localhost:8000\n"
    )

    problem = only_problem(write(tmp_path, text))

    assert (problem.line, problem.key_path) == (5, "ai.providers.local.base_url")


def test_a_provider_name_must_be_usable_in_provider_colon_model(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "ai:\n  providers:\n    My:Llm: {type: openai}\n"))

    assert (problem.line, problem.key_path) == (3, "ai.providers.My:Llm")


def test_the_default_provider_must_be_configured(tmp_path: Path) -> None:
    text = "ai:\n  providers:\n    local: {type: openai-chat}\n  default_provider: openai\n"

    problem = only_problem(write(tmp_path, text))

    assert (problem.line, problem.key_path) == (4, "ai.default_provider")


@pytest.mark.parametrize(("rounds", "ok"), [(0, False), (1, True), (100, True), (101, False)])
def test_max_tool_rounds_is_between_1_and_100(tmp_path: Path, rounds: int, ok: bool) -> None:
    settings = write(tmp_path, f"ai:\n  max_tool_rounds: {rounds}\n")

    if ok:
        assert load_ai_config(settings).max_tool_rounds == rounds
    else:
        assert only_problem(settings).key_path == "ai.max_tool_rounds"


def test_an_extra_mcp_json_that_does_not_exist_is_named(tmp_path: Path) -> None:
    settings = write(tmp_path, "ai:\n  mcp_configs:\n    - a/.mcp.json\n")

    problem = only_problem(settings)

    assert (problem.line, problem.key_path) == (3, "ai.mcp_configs[0]")


def test_settings_outside_the_ai_section_are_pointed_there(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "providers: {}\nauto_discover: true\n"))

    assert problem.source == SOURCE
    assert "ai:" in problem.message


def test_every_problem_is_reported_in_reading_order(tmp_path: Path) -> None:
    text = "ai:\n  timeouts: {tool_call_s: 0}\n  max_tool_rounds: 0\n  auto_discover: 3\n"
    settings = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_ai_config(settings)

    assert [p.line for p in caught.value.problems] == [2, 3, 4]


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "ai:\n  providers: {local: [\n"))

    assert problem.source == SOURCE
    assert problem.line is not None


def test_api_keys_are_read_when_asked_for(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools/.mcp.json").write_text("{}")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/anthropic.txt").write_text("from-a-file\n")
    settings = write(tmp_path, GOOD, environ={"OPENAI_API_KEY": "from-env"})
    config = load_ai_config(settings)

    assert resolve_api_key(config, "local", settings) == "from-env"
    assert resolve_api_key(config, "claude", settings) == "from-a-file"


def test_a_provider_without_a_key_has_none(tmp_path: Path) -> None:
    settings = write(tmp_path, "ai:\n  providers:\n    vllm: {type: openai-chat}\n")

    assert resolve_api_key(load_ai_config(settings), "vllm", settings) is None


def test_an_unset_key_variable_names_the_provider_key(tmp_path: Path) -> None:
    text = "ai:\n  providers:\n    x:\n      type: anthropic\n      api_key: {$env: NOT_SET_HERE}\n"
    settings = write(tmp_path, text)
    config = load_ai_config(settings)

    with pytest.raises(ConfigError) as caught:
        resolve_api_key(config, "x", settings)

    [problem] = caught.value.problems
    assert (problem.source, problem.key_path) == (SOURCE, "ai.providers.x.api_key")
    assert "NOT_SET_HERE" in problem.message
