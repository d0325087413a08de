"""``atrium plugins mcp list|show|list-packages`` over a real project folder."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

from tests.cli.helpers import run_atrium

SERVERS = dedent(
    """\
    mcp_servers:
      github:
        binary: github-mcp
        package: github-tools
        port: 5100
        description: GitHub issues and pull requests
        oauth: {required: true, scopes: [user, "tools:read"]}
        tools: {allowed: ["*"], denied: ["delete_*"], public: ["search_*"]}
        env:
          GITHUB_TOKEN: {$env: GH_TOKEN}
          LOG_LEVEL: debug
          WEBHOOK_SECRET: hunter2
      upstream:
        transport: remote
        url: https://mcp.example.com/mcp
        enabled: false
        description: A federated server
    """
)


def project_with_servers(tmp_path: Path) -> Path:
    (tmp_path / "services/mcp").mkdir(parents=True)
    (tmp_path / "services/mcp/servers.yaml").write_text(SERVERS)
    return tmp_path


def mcp(project: Path, *args: str) -> tuple[int, str, str]:
    result = run_atrium("--project", str(project), "plugins", "mcp", *args, env={"GH_TOKEN": "x"})
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_name_port_enabled_transport_oauth_scopes_description(tmp_path: Path) -> None:
    code, out, _ = mcp(project_with_servers(tmp_path), "list")

    assert code == 0
    github = next(line for line in out.splitlines() if "github" in line)
    for cell in ["5100", "yes", "http", "required", "user, tools:read", "GitHub issues"]:
        assert cell in github
    upstream = next(line for line in out.splitlines() if "upstream" in line)
    for cell in ["no", "remote", "off"]:
        assert cell in upstream


def test_list_json_gives_every_column_and_the_public_endpoint(tmp_path: Path) -> None:
    code, out, _ = mcp(project_with_servers(tmp_path), "list", "--json")

    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["github"]["endpoint"] == "http://localhost:8080/api/v1/mcp/github/mcp"
    assert rows["github"]["scopes"] == ["user", "tools:read"]
    assert rows["upstream"]["port"] is None


def test_show_gives_every_field_the_endpoint_and_the_tool_policy(tmp_path: Path) -> None:
    code, out, _ = mcp(project_with_servers(tmp_path), "show", "github")

    assert code == 0
    text = " ".join(out.split())
    assert "http://localhost:8080/api/v1/mcp/github/mcp" in text
    assert "timeout_s 60.0" in text
    assert "Tool policy: allowed *; denied delete_*; public (anonymous callers) search_*" in text


def test_show_json_redacts_literal_secrets_and_keeps_references(tmp_path: Path) -> None:
    code, out, _ = mcp(project_with_servers(tmp_path), "show", "github", "--json")

    env = json.loads(out)["config"]["env"]
    assert code == 0
    assert env == {
        "GITHUB_TOKEN": {"$env": "GH_TOKEN"},
        "LOG_LEVEL": "debug",
        "WEBHOOK_SECRET": "***",
    }


def test_show_of_an_unknown_server_exits_1_and_names_the_known_ones(tmp_path: Path) -> None:
    code, _, err = mcp(project_with_servers(tmp_path), "show", "gitlab")

    assert code == 1
    assert "server 'gitlab' not found; known: github, upstream" in " ".join(err.split())


def test_list_packages_names_each_package_its_servers_and_whether_it_is_installed(
    tmp_path: Path,
) -> None:
    project = project_with_servers(tmp_path)
    extension = project / "extensions/mcp/github-tools"
    extension.mkdir(parents=True)
    (extension / "manifest.yaml").write_text(
        "extension: {type: mcp, name: github-tools, binary: github-mcp, port: 5100}\n"
    )

    code, out, _ = mcp(project, "list-packages", "--json")

    assert code == 0
    assert json.loads(out) == [
        {
            "package": "github-tools",
            "binary": "github-mcp",
            "servers": ["github"],
            "extension": "extensions/mcp/github-tools/manifest.yaml",
            "installed": False,
        }
    ]


def test_show_says_which_tools_callers_without_a_token_get(tmp_path: Path) -> None:
    # atrium.gateway.access, rule 5: read-only tools unless dev_mode; none behind sign-in.
    (tmp_path / "services/mcp").mkdir(parents=True)
    servers = {
        "local": "oauth: {required: false}",
        "dev": "oauth: {dev_mode: true}",
        "locked": "oauth: {required: true}",
    }
    text = "mcp_servers:\n" + "".join(
        f"  {name}:\n    binary: b\n    port: {5100 + i}\n    {oauth}\n"
        for i, (name, oauth) in enumerate(servers.items())
    )
    (tmp_path / "services/mcp/servers.yaml").write_text(text)

    shown = {name: mcp(tmp_path, "show", name) for name in servers}

    public = {name: " ".join(out.split()) for name, (_, out, _) in shown.items()}
    assert "public (anonymous callers) the tools annotated readOnlyHint" in public["local"]
    assert "public (anonymous callers) every allowed tool (oauth.dev_mode" in public["dev"]
    assert "public (anonymous callers) none (sign-in required)" in public["locked"]
    warnings = [line for line in shown["local"][2].splitlines() if "DEV MODE" in line]
    assert len(warnings) == 1  # every command that loads the servers warns, about each
    assert "server 'dev'" in warnings[0]
