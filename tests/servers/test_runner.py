"""The command line every hosted server accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from atrium.auth.assertion import PUBLIC_FILE, ensure_caller_keys
from atrium.servers.runner import parse_options

ISSUER = "http://localhost:8080"


@pytest.fixture(autouse=True)
def no_supervisor_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ATRIUM_CALLER_KEYS", "ATRIUM_SERVER_NAME", "ATRIUM_PROJECT"):
        monkeypatch.delenv(name, raising=False)


def test_port_and_project_fall_back_to_what_the_supervisor_sets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ensure_caller_keys(tmp_path / ".atrium", ISSUER)
    monkeypatch.setenv("ATRIUM_SERVER_PORT", "5123")
    monkeypatch.setenv("ATRIUM_PROJECT", str(tmp_path))
    monkeypatch.setenv("ATRIUM_SERVER_NAME", "weather")

    options = parse_options([])

    assert (options.port, options.project, options.host) == (5123, tmp_path, "127.0.0.1")
    assert (options.caller_keys, options.name) == (tmp_path / ".atrium" / PUBLIC_FILE, "weather")


def test_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ensure_caller_keys(tmp_path / ".atrium", ISSUER)
    monkeypatch.setenv("ATRIUM_SERVER_PORT", "5123")
    monkeypatch.setenv("ATRIUM_CALLER_KEYS", str(tmp_path / "elsewhere.json"))

    options = parse_options(
        [
            *("--port", "5200", "--project", str(tmp_path), "--log-file", "x.log"),
            *("--caller-keys", str(tmp_path / "keys.json")),
        ]
    )

    assert (options.port, options.project, options.log_file) == (5200, tmp_path, Path("x.log"))
    assert options.caller_keys == tmp_path / "keys.json"


def test_the_keys_variable_the_supervisor_sets_is_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ATRIUM_CALLER_KEYS", str(tmp_path / "keys.json"))

    options = parse_options(["--port", "5200", "--project", str(tmp_path)])

    assert options.caller_keys == tmp_path / "keys.json"


def test_a_server_without_caller_keys_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_options(["--port", "5200", "--project", str(tmp_path)])

    assert caught.value.code == 2
    assert "--unauthenticated" in capsys.readouterr().err


def test_unauthenticated_is_an_explicit_choice(tmp_path: Path) -> None:
    ensure_caller_keys(tmp_path / ".atrium", ISSUER)

    options = parse_options(["--port", "5200", "--project", str(tmp_path), "--unauthenticated"])

    assert options.caller_keys is None


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
