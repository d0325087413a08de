from atrium.__about__ import __version__
from tests.cli.helpers import run_atrium


def test_version_exits_zero_and_prints_the_version() -> None:
    result = run_atrium("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"atrium {__version__}"


def test_help_of_every_command_group_exits_zero() -> None:
    for args in (
        ("--help",),
        ("plugins", "--help"),
        ("plugins", "mcp", "--help"),
        ("cloud", "sync", "local", "--help"),
    ):
        result = run_atrium(*args)

        assert result.exit_code == 0, (args, result.stderr)
        assert "Usage" in result.stdout, args


def test_an_unknown_command_is_a_usage_error() -> None:
    result = run_atrium("plugins", "nope")

    assert result.exit_code == 2
    assert "nope" in result.stderr
