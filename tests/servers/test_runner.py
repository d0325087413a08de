"""The command line every hosted server accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from atrium.servers.runner import parse_options


def test_port_and_project_fall_back_to_what_the_supervisor_sets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ATRIUM_SERVER_PORT", "5123")
    monkeypatch.setenv("ATRIUM_PROJECT", str(tmp_path))

    options = parse_options([])

    assert (options.port, options.project, options.host) == (5123, tmp_path, "127.0.0.1")


def test_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATRIUM_SERVER_PORT", "5123")

    options = parse_options(["--port", "5200", "--project", str(tmp_path), "--log-file", "x.log"])

    assert (options.port, options.project, options.log_file) == (5200, tmp_path, Path("x.log"))


def test_a_missing_port_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ATRIUM_SERVER_PORT", raising=False)

    with pytest.raises(SystemExit) as caught:
        parse_options([])

    assert caught.value.code == 2
    assert "--port is required" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["http", "0", "70000"])
def test_a_port_variable_that_is_not_a_port_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("ATRIUM_SERVER_PORT", value)

    with pytest.raises(SystemExit) as caught:
        parse_options([])

    assert caught.value.code == 2
    assert "ATRIUM_SERVER_PORT" in capsys.readouterr().err
