"""Every way a server file or an extension manifest can be wrong, seen through the CLI.

Each test asserts the exit code (2) and the located parts of the message: the file, line and
column, the server and the key path. Positions are those of the key (or, for a list item, of
the item) at fault in the YAML written by the test.
"""

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from atrium.settings import Settings
from atrium.store import Store
from tests.cli.helpers import CliResult, run_atrium

ALPHA = """\
mcp_servers:
  alpha:
    binary: alpha-mcp
    port: 5001
"""


def write(project: Path, name: str, text: str) -> None:
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def mcp_list(project: Path, env: dict[str, str] | None = None) -> CliResult:
    return run_atrium("--project", str(project), "plugins", "mcp", "list", env=env)


def assert_reported(result: CliResult, *parts: str) -> None:
    """One line of stderr holds every part: the problem is located, not just mentioned."""
    lines = result.stderr.splitlines()
    assert any(all(part in line for part in parts) for line in lines), (parts, result.stderr)


def test_a_value_of_the_wrong_type_names_file_line_server_and_key_path(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/bad.yaml", ALPHA.replace("5001", "high"))

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/bad.yaml:4:5", "server 'alpha'", "mcp_servers.alpha.port")


def test_unknown_keys_of_a_server_and_of_its_oauth_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        "services/mcp/bad.yaml",
        ALPHA + "    colour: red\n    oauth:\n      required: true\n      scope: read\n",
    )

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/bad.yaml:5:5", "mcp_servers.alpha.colour")
    assert_reported(result, "services/mcp/bad.yaml:8:7", "mcp_servers.alpha.oauth.scope")


def test_a_port_outside_the_default_range_names_file_and_key_path(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/bad.yaml", ALPHA.replace("5001", "6001"))

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/bad.yaml:4:5", "server 'alpha'", "mcp_servers.alpha.port")


def test_the_port_range_of_atrium_yaml_replaces_the_default(tmp_path: Path) -> None:
    write(tmp_path, "atrium.yaml", "mcp: {port_range: 6000-6100}\n")
    write(tmp_path, "services/mcp/alpha.yaml", ALPHA)

    refused = mcp_list(tmp_path)
    write(tmp_path, "services/mcp/alpha.yaml", ALPHA.replace("5001", "6050"))
    accepted = mcp_list(tmp_path)

    assert refused.exit_code == 2
    assert_reported(refused, "services/mcp/alpha.yaml:4:5", "mcp_servers.alpha.port")
    assert accepted.exit_code == 0, accepted.stderr


def test_the_port_range_of_atrium_port_range_replaces_the_file_and_the_default(
    tmp_path: Path,
) -> None:
    write(tmp_path, "atrium.yaml", "mcp: {port_range: 5000-5999}\n")
    write(tmp_path, "services/mcp/alpha.yaml", ALPHA)

    result = mcp_list(tmp_path, env={"ATRIUM_PORT_RANGE": "6000-6100"})

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/alpha.yaml:4:5", "mcp_servers.alpha.port")


def test_the_same_server_name_in_two_files_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/a.yaml", ALPHA)
    write(tmp_path, "services/mcp/b.yaml", ALPHA.replace("5001", "5002"))

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/b.yaml:2:3", "mcp_servers.alpha", "services/mcp/a.yaml")


def test_the_same_port_in_two_files_names_both_files_and_the_key_path(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/a.yaml", ALPHA)
    write(tmp_path, "services/mcp/b.yaml", ALPHA.replace("alpha", "beta"))

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(
        result,
        "services/mcp/b.yaml:4:5",
        "server 'beta'",
        "mcp_servers.beta.port",
        "services/mcp/a.yaml",
    )


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ("port: 5001", "binary"),
        ("transport: stdio\n    port: 5001", "command"),
        ("transport: remote", "url"),
    ],
)
def test_a_server_without_what_its_transport_needs_names_the_missing_key(
    tmp_path: Path, fields: str, missing: str
) -> None:
    write(tmp_path, "services/mcp/bad.yaml", f"mcp_servers:\n  alpha:\n    {fields}\n")

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(
        result, "services/mcp/bad.yaml:2:3", "server 'alpha'", "mcp_servers.alpha", f"'{missing}'"
    )


def test_invalid_globs_in_allowed_and_denied_name_the_list_item(tmp_path: Path) -> None:
    write(
        tmp_path,
        "services/mcp/bad.yaml",
        ALPHA
        + "    tools:\n      allowed:\n        - get_[abc\n      denied:\n        - bad name\n",
    )

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/bad.yaml:7:11", "mcp_servers.alpha.tools.allowed[0]")
    assert_reported(result, "services/mcp/bad.yaml:9:11", "mcp_servers.alpha.tools.denied[0]")


def test_malformed_yaml_names_the_file_line_and_column(tmp_path: Path) -> None:
    # The second ':' of "  alpha: binary: x" (line 2, column 16) cannot start a nested mapping.
    write(tmp_path, "services/mcp/bad.yaml", "mcp_servers:\n  alpha: binary: x\n")

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/bad.yaml:2:16: malformed YAML")


def test_an_empty_file_names_the_file_and_the_key_it_needs(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/empty.yaml", "# nothing yet\n")

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/empty.yaml", "mcp_servers")


@pytest.mark.parametrize("name", ["Alpha", "alpha_1", "-alpha", "alpha.beta"])
def test_a_server_name_unfit_for_urls_names_the_server_key(tmp_path: Path, name: str) -> None:
    write(tmp_path, "services/mcp/bad.yaml", ALPHA.replace("alpha:", f"{name}:"))

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/bad.yaml:2:3", f"mcp_servers.{name}")


def test_every_problem_of_every_file_is_reported_in_one_run(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/a.yaml", ALPHA.replace("5001", "high"))
    write(tmp_path, "services/mcp/b.yaml", "mcp_servers:\n  beta: binary: x\n")
    write(tmp_path, "services/mcp/c.yaml", ALPHA.replace("alpha", "gamma") + "    colour: red\n")
    write(tmp_path, "extensions/mcp/weather/manifest.yaml", "extension:\n  type: plugin\n")

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/a.yaml:4:5", "mcp_servers.alpha.port")
    assert_reported(result, "services/mcp/b.yaml:2:15", "malformed YAML")
    assert_reported(result, "services/mcp/c.yaml:5:5", "mcp_servers.gamma.colour")
    assert_reported(result, "extensions/mcp/weather/manifest.yaml:2:3", "extension.type")
    assert_reported(result, "extensions/mcp/weather/manifest.yaml", "extension.name")


ALPHA_WITH_ENV = ALPHA + "    env:\n      API_KEY: {$env: ALPHA_KEY}\n"


def test_an_env_reference_to_an_unset_variable_is_a_warning_at_load(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/alpha.yaml", ALPHA_WITH_ENV)

    result = mcp_list(tmp_path)

    assert result.exit_code == 0
    assert_reported(
        result, "warning", "ALPHA_KEY", "services/mcp/alpha.yaml", "mcp_servers.alpha.env.API_KEY"
    )
    assert "alpha" in result.stdout


def test_an_env_reference_to_a_set_variable_gives_no_warning(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/alpha.yaml", ALPHA_WITH_ENV)

    result = mcp_list(tmp_path, env={"ALPHA_KEY": "secret"})

    assert result.exit_code == 0
    assert result.stderr == ""


async def stored_server_names(settings: Settings) -> list[str]:
    async with await Store.open(settings) as store:
        return [record.name for record in await store.servers.list()]


def test_a_broken_file_makes_sync_to_db_apply_nothing(
    tmp_path: Path, database_settings: Settings
) -> None:
    env = {"ATRIUM_DATABASE_URL": database_settings.database_url}
    if database_settings.database_schema:
        env["ATRIUM_DATABASE_SCHEMA"] = database_settings.database_schema
    write(tmp_path, "services/mcp/alpha.yaml", ALPHA)
    write(tmp_path, "services/mcp/broken.yaml", ALPHA.replace("alpha", "beta").replace("1", "x"))
    sync = ("--project", str(tmp_path), "cloud", "sync", "local", "mcp", "--direction", "to-db")

    refused = run_atrium(*sync, "-y", env=env)
    after_refusal = asyncio.run(stored_server_names(database_settings))
    (tmp_path / "services/mcp/broken.yaml").unlink()
    applied = run_atrium(*sync, "-y", env=env)

    assert refused.exit_code == 2
    assert_reported(refused, "services/mcp/broken.yaml:4:5", "mcp_servers.beta.port")
    assert after_refusal == []
    assert applied.exit_code == 0, applied.stderr
    assert asyncio.run(stored_server_names(database_settings)) == ["alpha"]


def test_a_valid_extension_manifest_is_listed_as_a_package(tmp_path: Path) -> None:
    write(
        tmp_path,
        "extensions/mcp/weather/manifest.yaml",
        """\
        extension:
          type: mcp
          name: weather
          binary: weather-mcp
          description: Forecasts
          port: 5005
        """,
    )

    result = run_atrium("--project", str(tmp_path), "plugins", "mcp", "list-packages", "--json")

    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["package"] == "weather"
    assert row["binary"] == "weather-mcp"
    assert row["extension"] == "extensions/mcp/weather/manifest.yaml"


@pytest.mark.parametrize(
    ("change", "located", "key_path"),
    [
        (("  port: 5005\n", "  port: 5005\n  colour: blue\n"), ":6:3", "extension.colour"),
        (("type: mcp", "type: plugin"), ":2:3", "extension.type"),
        (("name: weather", "name: forecast"), ":3:3", "extension.name"),
    ],
)
def test_an_invalid_extension_manifest_names_the_manifest_and_key_path(
    tmp_path: Path, change: tuple[str, str], located: str, key_path: str
) -> None:
    manifest = "extension:\n  type: mcp\n  name: weather\n  binary: weather-mcp\n  port: 5005\n"
    write(tmp_path, "extensions/mcp/weather/manifest.yaml", manifest.replace(*change))

    result = run_atrium("--project", str(tmp_path), "plugins", "mcp", "list-packages")

    assert result.exit_code == 2
    assert_reported(result, f"extensions/mcp/weather/manifest.yaml{located}", key_path)


def test_dev_mode_is_a_loud_warning_at_load_naming_the_server_and_key(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/alpha.yaml", ALPHA + "    oauth: {dev_mode: true}\n")

    result = mcp_list(tmp_path)

    assert result.exit_code == 0
    assert_reported(
        result, "warning", "DEV MODE", "server 'alpha'", "mcp_servers.alpha.oauth.dev_mode"
    )


def test_dev_mode_beside_oauth_required_is_refused_naming_the_oauth_key(tmp_path: Path) -> None:
    write(
        tmp_path, "services/mcp/alpha.yaml", ALPHA + "    oauth: {required: true, dev_mode: true}\n"
    )

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "services/mcp/alpha.yaml", "mcp_servers.alpha.oauth", "dev_mode")


def test_a_shell_style_reference_in_env_names_its_line_and_key(tmp_path: Path) -> None:
    write(tmp_path, "services/mcp/bad.yaml", ALPHA + "    env:\n      TOKEN: ${ASANA_TOKEN}\n")

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(
        result,
        "services/mcp/bad.yaml:6:7",
        "server 'alpha'",
        "mcp_servers.alpha.env.TOKEN",
        "write {$env: ASANA_TOKEN}",
    )


def test_a_port_or_a_url_of_the_wrong_transport_names_the_key(tmp_path: Path) -> None:
    remote = "mcp_servers:\n  alpha:\n    transport: remote\n    url: https://x.example/mcp\n"
    write(tmp_path, "services/mcp/bad.yaml", remote + "    port: 5001\n")

    result = mcp_list(tmp_path)

    assert result.exit_code == 2
    assert_reported(result, "server 'alpha'", "'port' is not for transport 'remote'")
