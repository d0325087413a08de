"""The allow-list of the ``atrium`` tool, and running a command."""

from __future__ import annotations

import os

import pytest

from atrium.servers.atrium.commands import (
    DEFAULT_ALLOWED_COMMANDS,
    AllowList,
    CommandRefused,
    parse_command,
    run_cli,
)
from atrium.settings import Settings

DEFAULT = AllowList.from_environ({})


def test_a_command_starting_with_an_allowed_prefix_is_split_into_arguments() -> None:
    assert parse_command("plugins mcp show 'my server'", DEFAULT) == (
        "plugins",
        "mcp",
        "show",
        "my server",
    )


def test_a_leading_atrium_word_is_dropped() -> None:
    assert parse_command("atrium plugins mcp list --json", DEFAULT) == (
        "plugins",
        "mcp",
        "list",
        "--json",
    )


def test_shell_syntax_is_only_characters_of_an_argument() -> None:
    assert parse_command("plugins mcp show 'a; rm -rf /'", DEFAULT)[-1] == "a; rm -rf /"
    with pytest.raises(CommandRefused):
        parse_command("plugins mcp list; rm -rf /", DEFAULT)


@pytest.mark.parametrize(
    "command",
    ["", "plugins", "plugins mcp", "cloud sync local mcp -d to-db -y", "plugins mcp listing"],
)
def test_a_command_without_an_allowed_prefix_is_refused(command: str) -> None:
    with pytest.raises(CommandRefused, match="allowed commands start with: plugins mcp list"):
        parse_command(command, DEFAULT)


@pytest.mark.parametrize(
    "command",
    [
        "plugins mcp list --project /elsewhere",
        "plugins mcp list --project=/elsewhere",
        "plugins mcp list -p /elsewhere",
        "-p/elsewhere plugins mcp list",
    ],
)
def test_naming_another_project_is_refused(command: str) -> None:
    with pytest.raises(CommandRefused, match="--project"):
        parse_command(command, DEFAULT)


def test_an_unbalanced_quote_is_refused() -> None:
    with pytest.raises(CommandRefused, match="cannot parse"):
        parse_command("plugins mcp show 'oops", DEFAULT)


def test_the_default_allow_list_is_the_read_only_commands() -> None:
    assert str(DEFAULT) == ", ".join(DEFAULT_ALLOWED_COMMANDS)


def test_atrium_allowed_commands_replaces_the_allow_list() -> None:
    allowed = AllowList.from_environ({"ATRIUM_ALLOWED_COMMANDS": "plugins mcp show, infra"})

    assert parse_command("infra services status", allowed) == ("infra", "services", "status")
    with pytest.raises(CommandRefused):
        parse_command("plugins mcp list", allowed)


def test_an_empty_atrium_allowed_commands_means_the_default() -> None:
    assert AllowList.from_environ({"ATRIUM_ALLOWED_COMMANDS": " "}) == DEFAULT


async def test_a_run_captures_the_exit_code_and_both_streams(project: Settings) -> None:
    run = await run_cli(
        ["plugins", "mcp", "show", "nope"], project=project.project_dir, environ=os.environ
    )

    assert run.exit_code == 1
    assert "nope" in run.stderr
    assert run.stdout == ""
    assert run.duration_ms > 0


async def test_a_run_over_the_time_limit_is_stopped(project: Settings) -> None:
    # Starting Python alone takes longer than a millisecond.
    run = await run_cli(
        ["plugins", "mcp", "list"], project=project.project_dir, environ={}, timeout_s=0.001
    )

    assert run.exit_code is None
    assert "stopped after" in run.stderr


@pytest.mark.parametrize(
    "command",
    [
        "plugins mcp tools atrium --url http://127.0.0.1:5010/mcp",
        "plugins mcp tools atrium --url=http://127.0.0.1:9/mcp",
    ],
)
def test_a_command_may_not_choose_where_it_connects(command: str) -> None:
    with pytest.raises(CommandRefused, match="--url"):
        parse_command(command, DEFAULT)
