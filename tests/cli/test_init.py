"""``atrium init``: the scaffold, file modes, and never overwriting the user's files."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from atrium.ai.agents import load_agents
from atrium.ai.config import load_ai_config
from atrium.scaffold.project import init_project
from atrium.settings import load_settings
from tests.cli.helpers import run_atrium

BUILTINS = {"atrium": 5010, "soul": 5020, "content-manager": 5040, "marketplace": 5050}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_scaffold_with_the_four_builtin_servers(tmp_path: Path) -> None:
    result = run_atrium("init", str(tmp_path / "p"))

    assert result.exit_code == 0, result.stderr
    project = tmp_path / "p"
    for relative in [
        "atrium.yaml",
        ".gitignore",
        "services/ai/config.yaml",
        "services/agents/assistant.md",
        "services/playbooks",
        "extensions/mcp",
        "logs",
        *(f"services/mcp/{name}.yaml" for name in BUILTINS),
    ]:
        assert (project / relative).exists(), relative
    listed = run_atrium("--project", str(project), "plugins", "mcp", "list", "--json")
    ports = {row["name"]: row["port"] for row in json.loads(listed.stdout)}
    assert ports == BUILTINS


def test_only_builtin_servers_with_an_installed_binary_are_enabled(tmp_path: Path) -> None:
    run_atrium("init", str(tmp_path))

    listed = json.loads(
        run_atrium("--project", str(tmp_path), "plugins", "mcp", "list", "--json").stdout
    )

    # Every built-in server is a console script of this package.
    assert {row["name"]: row["enabled"] for row in listed} == dict.fromkeys(BUILTINS, True)


def test_a_builtin_server_whose_binary_is_missing_is_written_disabled(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    init_project(settings, binaries=lambda: frozenset({"atrium-mcp-atrium"}))

    listed = json.loads(
        run_atrium("--project", str(tmp_path), "plugins", "mcp", "list", "--json").stdout
    )

    expected = dict.fromkeys(BUILTINS, False) | {"atrium": True}
    assert {row["name"]: row["enabled"] for row in listed} == expected


def test_state_is_private_to_the_owner(tmp_path: Path) -> None:
    run_atrium("init", str(tmp_path))

    assert mode(tmp_path / ".atrium") == 0o700
    assert mode(tmp_path / ".atrium/signing-keys.json") == 0o600
    assert mode(tmp_path / ".atrium/session-key") == 0o600
    assert mode(tmp_path / ".atrium/atrium.db") == 0o600
    keys = json.loads((tmp_path / ".atrium/signing-keys.json").read_text())["keys"]
    assert keys[0]["kty"] == "EC"
    assert keys[0]["kid"]
    assert "d" in keys[0]  # the private part: this file is the signing key
    assert ".atrium/" in (tmp_path / ".gitignore").read_text()


def test_running_init_again_never_overwrites_a_file_the_user_has(tmp_path: Path) -> None:
    run_atrium("init", str(tmp_path))
    settings_file = tmp_path / "atrium.yaml"
    settings_file.write_text("gateway:\n  port: 9090\n")
    (tmp_path / "services/mcp/soul.yaml").unlink()
    key_before = (tmp_path / ".atrium/signing-keys.json").read_text()

    result = run_atrium("init", str(tmp_path))

    assert result.exit_code == 0, result.stderr
    assert settings_file.read_text() == "gateway:\n  port: 9090\n"
    assert (tmp_path / "services/mcp/soul.yaml").exists()
    assert (tmp_path / ".atrium/signing-keys.json").read_text() == key_before
    assert "created services/mcp/soul.yaml" in " ".join(result.stdout.split())


def test_init_uses_the_project_option_when_no_folder_is_given(tmp_path: Path) -> None:
    result = run_atrium("--project", str(tmp_path), "init")

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "services/mcp/atrium.yaml").exists()


def test_the_ai_config_and_example_agent_init_writes_are_valid(tmp_path: Path) -> None:
    result = run_atrium("init", str(tmp_path))

    assert result.exit_code == 0, result.stderr
    settings = load_settings(tmp_path, environ={})
    config = load_ai_config(settings)
    assert config.providers == {}
    assert config.auto_discover is True
    agents = load_agents(settings)
    assert list(agents) == ["assistant"]
    assert agents["assistant"].model == "inherit"
    assert agents["assistant"].prompt
    # The commented example is a valid provider once uncommented.
    text = (tmp_path / "services/ai/config.yaml").read_text()
    uncommented = re.sub(r"(?m)^  # ", "  ", text.replace("  providers: {}\n", ""))
    (tmp_path / "services/ai/config.yaml").write_text(uncommented)
    config = load_ai_config(settings)
    assert config.providers["local"].base_url == "http://localhost:11434/v1"
    assert (config.provider_name, config.default_model) == ("local", "llama3.1")
