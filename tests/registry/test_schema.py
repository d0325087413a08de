import fnmatch
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from atrium.registry import globs
from atrium.registry.globs import validate_glob
from atrium.registry.schema import EnvRef, FileRef, ServerConfig, redacted

HTTP = {"binary": "alpha-mcp", "port": 5001}
REMOTE = {"transport": "remote", "url": "https://mcp.example.com/mcp"}


def error_messages(data: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        ServerConfig.model_validate(data)
    return [error["msg"] for error in caught.value.errors()]


def test_a_remote_server_needs_a_url():
    (message,) = error_messages({"transport": "remote"})

    assert "'url'" in message


def test_a_remote_server_needs_no_port_or_binary():
    config = ServerConfig.model_validate(REMOTE)

    assert (config.transport, config.port, config.binary) == ("remote", None, None)


def test_headers_are_only_for_remote_servers():
    (message,) = error_messages({**HTTP, "headers": {"X-Api-Key": "k"}})

    assert "'headers'" in message
    assert ServerConfig.model_validate({**REMOTE, "headers": {"X-Api-Key": "k"}}).headers


@pytest.mark.parametrize("rate", ["60/minute", "1000/day", "10 per second", "5/10 minutes"])
def test_a_rate_limit_like_count_per_period_is_accepted(rate):
    assert ServerConfig.model_validate({**HTTP, "rate_limit": rate}).rate_limit == rate


@pytest.mark.parametrize(
    "rate", ["60", "fast", "60/fortnight", "minute/60", "-1/minute", "0/minute", "1/0 minutes"]
)
def test_a_rate_limit_that_is_not_count_per_period_is_refused(rate):
    (message,) = error_messages({**HTTP, "rate_limit": rate})

    assert repr(rate) in message


def test_env_and_file_references_parse_into_their_types():
    config = ServerConfig.model_validate(
        {
            **REMOTE,
            "env": {"API_KEY": {"$env": "ALPHA_KEY"}, "MODE": "fast"},
            "headers": {"Authorization": {"$file": "secrets/token"}},
        }
    )

    assert config.env == {"API_KEY": EnvRef(env="ALPHA_KEY"), "MODE": "fast"}
    assert config.headers == {"Authorization": FileRef(file="secrets/token")}
    assert config.env_references() == [("env.API_KEY", "ALPHA_KEY")]


def test_a_reference_with_another_key_or_a_number_is_refused():
    for value in ({"$env": "A", "$file": "b"}, {"$envv": "A"}, 5):
        assert error_messages({**HTTP, "env": {"API_KEY": value}}), value


def test_literal_secrets_under_secret_looking_keys_are_redacted():
    config = ServerConfig.model_validate(
        {
            **REMOTE,
            "description": "weather",
            "env": {"API_KEY": "sk-123", "DB_PASSWORD": "hunter2", "REGION": "eu", "B": "x"},
            "headers": {"Authorization": "Bearer abc", "X-Trace": {"$env": "TRACE_TOKEN"}},
        }
    )

    shown = redacted(config.to_json())

    assert shown["env"] == {"API_KEY": "***", "DB_PASSWORD": "***", "REGION": "eu", "B": "x"}
    # A reference names a variable, not its value, so it is shown as is.
    assert shown["headers"] == {"Authorization": "***", "X-Trace": {"$env": "TRACE_TOKEN"}}
    assert shown["description"] == "weather"
    assert shown["url"] == REMOTE["url"]


@pytest.mark.parametrize("pattern", ["get_[abc", "bad name", "a]b", "", "[]x", "[!]", "tool/x"])
def test_an_invalid_glob_is_refused(pattern):
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
def test_globs_over_the_tool_name_alphabet_are_valid_and_match_like_fnmatch(parts, name):
    pattern = "".join(parts)

    validate_glob(pattern)
    assert globs.matches(pattern, name) is fnmatch.fnmatchcase(name, pattern)
