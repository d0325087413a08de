import dataclasses
import textwrap
from pathlib import Path

import pytest

from atrium.errors import ConfigError
from atrium.settings import load_settings, project_dir_from


def write_settings(project: Path, text: str) -> None:
    (project / "atrium.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


def test_defaults_without_atrium_yaml_or_environment(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})

    assert settings.project_dir == tmp_path.resolve()
    assert settings.gateway_host == "127.0.0.1"
    assert settings.gateway_port == 8080
    assert settings.public_url == "http://localhost:8080"
    assert settings.issuer == "http://localhost:8080"
    assert settings.port_range == (5000, 5999)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/.atrium/atrium.db"
    assert settings.database_schema is None
    assert settings.log_level == "info"


def test_values_from_atrium_yaml(tmp_path: Path) -> None:
    write_settings(
        tmp_path,
        """\
        gateway:
          host: 0.0.0.0
          port: 9000
          public_url: https://atrium.example.com/
        mcp:
          port_range: 6000-6100
        store:
          url: sqlite:////var/lib/atrium.db
          schema: atrium
        logging:
          level: debug
        """,
    )

    settings = load_settings(tmp_path, environ={})

    assert settings.gateway_host == "0.0.0.0"
    assert settings.gateway_port == 9000
    assert settings.public_url == "https://atrium.example.com"
    assert settings.issuer == "https://atrium.example.com"
    assert settings.port_range == (6000, 6100)
    assert settings.database_url == "sqlite+aiosqlite:////var/lib/atrium.db"
    assert settings.database_schema == "atrium"
    assert settings.log_level == "debug"


def test_sections_with_every_key_commented_out_take_the_defaults(tmp_path: Path) -> None:
    write_settings(
        tmp_path,
        """\
        store:
          # url: postgresql://postgres@127.0.0.1:5432/atrium
        oauth:
          # issuer: https://atrium.example.com
        """,
    )

    settings = load_settings(tmp_path, environ={})

    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.issuer == "http://localhost:8080"


def test_atrium_environment_variables_beat_atrium_yaml(tmp_path: Path) -> None:
    write_settings(
        tmp_path,
        """\
        gateway: {host: 127.0.0.1, port: 9000}
        mcp: {port_range: 6000-6100}
        logging: {level: debug}
        """,
    )
    environ = {
        "ATRIUM_GATEWAY_HOST": "0.0.0.0",
        "ATRIUM_GATEWAY_PORT": "9100",
        "ATRIUM_PUBLIC_URL": "https://gw.example.com",
        "ATRIUM_PORT_RANGE": "7000-7010",
        "ATRIUM_DATABASE_SCHEMA": "tenant1",
        "ATRIUM_ISSUER": "https://id.example.com/",
        "ATRIUM_LOG_LEVEL": "warning",
    }

    settings = load_settings(tmp_path, environ=environ)

    assert settings.gateway_host == "0.0.0.0"
    assert settings.gateway_port == 9100
    assert settings.public_url == "https://gw.example.com"
    assert settings.port_range == (7000, 7010)
    assert settings.database_schema == "tenant1"
    assert settings.issuer == "https://id.example.com"
    assert settings.log_level == "warning"


def test_a_postgresql_database_url_becomes_an_asyncpg_url(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={"ATRIUM_DATABASE_URL": "postgresql://u@h/db"})

    assert settings.database_url == "postgresql+asyncpg://u@h/db"


def test_the_process_environment_is_read_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATRIUM_GATEWAY_PORT", "9200")
    monkeypatch.setenv("SOME_API_KEY", "k")

    settings = load_settings(tmp_path)

    assert settings.gateway_port == 9200
    assert settings.environ["SOME_API_KEY"] == "k"


def test_the_project_option_beats_atrium_project_which_beats_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    option, from_env, cwd = (tmp_path / name for name in ("option", "env", "cwd"))
    for folder in (option, from_env, cwd):
        folder.mkdir()
    monkeypatch.chdir(cwd)

    assert project_dir_from(option, {"ATRIUM_PROJECT": str(from_env)}) == option.resolve()
    assert project_dir_from(None, {"ATRIUM_PROJECT": str(from_env)}) == from_env.resolve()
    assert project_dir_from(None, {}) == cwd.resolve()


def test_load_settings_finds_atrium_yaml_in_the_atrium_project_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_settings(tmp_path, "gateway: {port: 9300}\n")
    monkeypatch.chdir(tmp_path.parent)

    settings = load_settings(environ={"ATRIUM_PROJECT": str(tmp_path)})

    assert settings.project_dir == tmp_path.resolve()
    assert settings.gateway_port == 9300


def test_a_bad_value_in_atrium_yaml_names_the_file_line_and_key_path(tmp_path: Path) -> None:
    write_settings(
        tmp_path,
        """\
        gateway:
          host: 127.0.0.1
          port: abc
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})

    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.key_path) == ("atrium.yaml", 3, "gateway.port")
    assert caught.value.exit_code == 2


def test_an_unknown_key_in_atrium_yaml_is_refused(tmp_path: Path) -> None:
    write_settings(tmp_path, "mcp:\n  port_rang: 6000-6100\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})

    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.key_path) == ("atrium.yaml", 2, "mcp.port_rang")


def test_malformed_atrium_yaml_is_a_config_error_with_line_and_column(tmp_path: Path) -> None:
    write_settings(tmp_path, "gateway:\n  port: 8080: 9090\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})

    (problem,) = caught.value.problems
    # The second ':' of "  port: 8080: 9090" is on line 2, column 13.
    assert (problem.source, problem.line, problem.column) == ("atrium.yaml", 2, 13)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ATRIUM_GATEWAY_PORT", "abc"),
        ("ATRIUM_PORT_RANGE", "9-1"),
        ("ATRIUM_PORT_RANGE", "5000"),
        ("ATRIUM_PUBLIC_URL", "atrium.example.com"),
        ("ATRIUM_DATABASE_URL", "mysql://u@h/db"),
        ("ATRIUM_LOG_LEVEL", "loud"),
        ("ATRIUM_REDIS_URL", "http://127.0.0.1:6379"),
    ],
)
def test_a_bad_environment_override_names_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    write_settings(tmp_path, "gateway: {port: 8080}\nmcp: {port_range: 5000-5999}\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={variable: value})

    (problem,) = caught.value.problems
    assert problem.source == f"environment variable {variable}"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.gateway_port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.environ["ATRIUM_NEW"] = "x"  # type: ignore[index]


def test_rate_limits_and_redis_default_to_none_in_memory_and_closed_for_anonymous(
    tmp_path: Path,
) -> None:
    settings = load_settings(tmp_path, environ={})

    assert (settings.ratelimit.default, settings.ratelimit.per_tool) == (None, False)
    modes = settings.ratelimit.on_redis_error
    assert (modes.authenticated, modes.anonymous) == ("open", "closed")
    assert (settings.redis.url, settings.redis.key_prefix) == (None, "atrium")


def test_rate_limits_and_redis_from_atrium_yaml_and_atrium_redis_url(tmp_path: Path) -> None:
    write_settings(
        tmp_path,
        """\
        ratelimit:
          default: 600/minute
          per_tool: true
          on_redis_error: {authenticated: closed, anonymous: open}
        redis:
          url: redis://file.example:6379/0
          key_prefix: staging
        """,
    )

    settings = load_settings(tmp_path, environ={"ATRIUM_REDIS_URL": "redis://env.example/1"})

    assert (settings.ratelimit.default, settings.ratelimit.per_tool) == ("600/minute", True)
    modes = settings.ratelimit.on_redis_error
    assert (modes.authenticated, modes.anonymous) == ("closed", "open")
    assert (settings.redis.url, settings.redis.key_prefix) == ("redis://env.example/1", "staging")


def test_a_default_rate_limit_that_is_not_a_rate_names_its_key_path(tmp_path: Path) -> None:
    write_settings(tmp_path, "ratelimit:\n  default: lots\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})

    (problem,) = caught.value.problems
    assert (problem.line, problem.key_path) == (2, "ratelimit.default")


def test_no_proxy_is_trusted_unless_listed_and_listed_networks_are_normalised(
    tmp_path: Path,
) -> None:
    assert load_settings(tmp_path, environ={}).trusted_proxies == ()
    write_settings(tmp_path, "gateway:\n  trusted_proxies: [10.0.0.5, 10.1.2.3/16, '::1']\n")

    settings = load_settings(tmp_path, environ={})

    # uvicorn would take 10.1.2.3/16 (host bits set) for a name that no address matches.
    assert settings.trusted_proxies == ("10.0.0.5", "10.1.0.0/16", "::1")


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("gateway:\n  trusted_proxies: [proxy.example]\n", "gateway.trusted_proxies"),
        ("oauth:\n  registrations_per_address: plenty\n", "oauth.registrations_per_address"),
    ],
)
def test_a_proxy_named_by_host_or_a_registration_rate_that_is_no_rate_is_refused(
    tmp_path: Path, text: str, key_path: str
) -> None:
    write_settings(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})

    (problem,) = caught.value.problems
    assert (problem.line, problem.key_path) == (2, key_path)


def test_the_gateway_poll_is_a_setting_bounded_below(tmp_path: Path) -> None:
    write_settings(tmp_path, "gateway:\n  poll_s: 0.5\n")
    assert load_settings(tmp_path, environ={}).poll_s == 0.5

    write_settings(tmp_path, "gateway:\n  poll_s: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    (problem,) = caught.value.problems
    assert (problem.line, problem.key_path) == (2, "gateway.poll_s")
