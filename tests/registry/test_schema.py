import fnmatch
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from atrium.registry import globs
from atrium.registry.globs import validate_glob
from atrium.registry.schema import (
    EnvRef,
    FileRef,
    HttpServer,
    RemoteServer,
    StdioServer,
    parse_server_config,
    port_of,
)

HTTP = {"binary": "alpha-mcp", "port": 5001}
REMOTE = {"transport": "remote", "url": "https://mcp.example.com/mcp"}


def error_messages(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        parse_server_config(data)
    return [error["msg"] for error in caught.value.errors()]


def test_a_remote_server_needs_a_url() -> None:
    (message,) = error_messages({"transport": "remote"})

    assert "'url'" in message


def test_a_remote_server_needs_no_port_or_binary() -> None:
    config = parse_server_config(REMOTE)

    assert isinstance(config, RemoteServer)
    assert (config.transport, port_of(config), config.binary) == ("remote", None, None)
    assert not hasattr(config, "port")


def test_a_remote_server_with_a_port_or_command_is_refused() -> None:
    (message,) = error_messages({**REMOTE, "port": 5001})

    assert "'port' is not for transport 'remote'" in message
    (message,) = error_messages({**REMOTE, "command": ["x"]})

    assert "'command'" in message


@pytest.mark.parametrize(
    ("data", "model"),
    [(HTTP, HttpServer), ({"transport": "stdio", "command": ["x"], "port": 5002}, StdioServer)],
)
def test_each_transport_has_its_own_model_with_no_remote_keys(
    data: dict[str, Any], model: type[object]
) -> None:
    config = parse_server_config(data)

    assert type(config) is model
    assert not hasattr(config, "url")
    assert not hasattr(config, "headers")


def test_the_stored_form_of_earlier_versions_still_loads() -> None:
    # Earlier versions stored every key, those of other transports empty.
    stored = {**HTTP, "transport": "http", "url": None, "headers": {}, "forward_identity": False}
    assert parse_server_config(stored) == parse_server_config(HTTP)
    remote = {**REMOTE, "port": None, "command": None}
    assert parse_server_config(remote) == parse_server_config(REMOTE)
    # and a stored form reads back to the same model
    config = parse_server_config(REMOTE)
    assert parse_server_config(config.to_json()) == config


@pytest.mark.parametrize("transport", ["ftp", "", None])
def test_an_unknown_transport_names_the_three(transport: str | None) -> None:
    (message,) = error_messages({**HTTP, "transport": transport})

    assert "'http', 'stdio' or 'remote'" in message


def test_headers_are_only_for_remote_servers() -> None:
    (message,) = error_messages({**HTTP, "headers": {"X-Api-Key": "k"}})

    assert "'headers'" in message
    remote = parse_server_config({**REMOTE, "headers": {"X-Api-Key": "k"}})
    assert isinstance(remote, RemoteServer)
    assert remote.headers


@pytest.mark.parametrize("rate", ["60/minute", "1000/day", "10 per second", "5/10 minutes"])
def test_a_rate_limit_like_count_per_period_is_accepted(rate: str) -> None:
    assert parse_server_config({**HTTP, "rate_limit": rate}).rate_limit == rate


@pytest.mark.parametrize(
    "rate", ["60", "fast", "60/fortnight", "minute/60", "-1/minute", "0/minute", "1/0 minutes"]
)
def test_a_rate_limit_that_is_not_count_per_period_is_refused(rate: str) -> None:
    (message,) = error_messages({**HTTP, "rate_limit": rate})

    assert repr(rate) in message


def test_env_and_file_references_parse_into_their_types() -> None:
    config = parse_server_config(
        {
            **REMOTE,
            "env": {"API_KEY": {"$env": "ALPHA_KEY"}, "MODE": "fast"},
            "headers": {"Authorization": {"$file": "secrets/token"}},
        }
    )

    assert isinstance(config, RemoteServer)
    assert config.env == {"API_KEY": EnvRef(env="ALPHA_KEY"), "MODE": "fast"}
    assert config.headers == {"Authorization": FileRef(file="secrets/token")}
    assert config.env_references() == [("env.API_KEY", "ALPHA_KEY")]


def test_a_reference_with_another_key_or_a_number_is_refused() -> None:
    for value in ({"$env": "A", "$file": "b"}, {"$envv": "A"}, 5):
        assert error_messages({**HTTP, "env": {"API_KEY": value}}), value


@pytest.mark.parametrize("pattern", ["get_[abc", "bad name", "a]b", "", "[]x", "[!]", "tool/x"])
def test_an_invalid_glob_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="glob"):
        validate_glob(pattern)


TOOL_CHARS = string.ascii_letters + string.digits + "_-."
# Character classes are kept to letters and digits: a '-' inside one makes a range.
CLASS = st.text(string.ascii_letters + string.digits, min_size=1, max_size=4)
GLOB_PART = st.one_of(
    st.sampled_from(TOOL_CHARS),
    st.sampled_from("*?"),
    CLASS.map(lambda body: f"[{body}]"),
    CLASS.map(lambda body: f"[!{body}]"),
)


@given(
    parts=st.lists(GLOB_PART, min_size=1, max_size=8),
    name=st.text(TOOL_CHARS, min_size=1, max_size=12),
)
def test_globs_over_the_tool_name_alphabet_are_valid_and_match_like_fnmatch(
    parts: list[str], name: str
) -> None:
    pattern = "".join(parts)

    validate_glob(pattern)
    assert globs.matches(pattern, name) is fnmatch.fnmatchcase(name, pattern)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({**REMOTE, "env": {"TOKEN": "${ASANA_TOKEN}"}}, "write {$env: ASANA_TOKEN}"),
        ({**REMOTE, "headers": {"X-Key": "Bearer ${KEY:-x}"}}, "write {$env: KEY}"),
        (
            {"transport": "stdio", "port": 5002, "command": ["run", "--token=${T}"]},
            "is not expanded in 'command'",
        ),
    ],
)
def test_a_shell_style_reference_is_refused_not_passed_on(data: dict[str, Any], words: str) -> None:
    (message,) = error_messages(data)

    assert words in message
