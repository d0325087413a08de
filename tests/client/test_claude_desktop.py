"""Claude Desktop's entry (``atrium bridge`` by absolute path) and its file on each OS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from atrium.client.configs import (
    ConfigFileError,
    Connection,
    atrium_command,
    claude_desktop_file,
    entry,
)


@pytest.mark.parametrize(
    ("platform", "environ", "expected"),
    [
        ("linux", {"HOME": "/home/ada"}, "/home/ada/.config/Claude/claude_desktop_config.json"),
        (
            "darwin",
            {"HOME": "/Users/ada"},
            "/Users/ada/Library/Application Support/Claude/claude_desktop_config.json",
        ),
        (
            "win32",
            {"APPDATA": "/c/Users/ada/AppData/Roaming", "HOME": "/nowhere"},
            "/c/Users/ada/AppData/Roaming/Claude/claude_desktop_config.json",
        ),
    ],
)
def test_the_file_is_in_the_folder_of_each_os(
    platform: str, environ: dict[str, str], expected: str
) -> None:
    assert claude_desktop_file(platform, environ) == Path(expected)


def test_without_home_the_file_cannot_be_found_and_says_use_file() -> None:
    with pytest.raises(ConfigFileError, match="--file"):
        claude_desktop_file("linux", {})


def test_the_entry_runs_atrium_bridge_with_the_servers_url() -> None:
    url = "https://atrium.example/api/v1/mcp/soul/mcp"
    connection = Connection("soul", url, atrium=("/opt/atrium/bin/atrium",))

    assert entry("claude-desktop", connection) == {
        "command": "/opt/atrium/bin/atrium",
        "args": ["bridge", url],
    }


def test_the_command_is_the_script_beside_the_interpreter_else_python_m_atrium(
    tmp_path: Path,
) -> None:
    (tmp_path / "python").touch()
    assert atrium_command(str(tmp_path / "python"), "linux") == (
        str(tmp_path / "python"),
        "-m",
        "atrium",
    )
    (tmp_path / "atrium").touch()
    assert atrium_command(str(tmp_path / "python"), "linux") == (str(tmp_path / "atrium"),)
    assert Path(atrium_command(sys.executable, sys.platform)[0]).is_absolute()
