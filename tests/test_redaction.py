from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from atrium.gateway.audit import capped_arguments
from atrium.redaction import MAX_DEPTH, SHOWN, TOO_DEEP, redacted, redacted_arguments, scrubbed
from atrium.registry.schema import parse_server_config

REMOTE = {"transport": "remote", "url": "https://mcp.example.com/mcp"}


def test_whatever_a_secret_looking_key_holds_is_hidden_at_any_depth() -> None:
    arguments = {
        "host": "db",
        "login": {"user": "ann", "password": "hunter2"},
        "credentials": {"user": "ann", "pass": "s3"},
        "token": 123456,
        "api_keys": ["sk-1", "sk-2"],
        "batch": [{"API_KEY": "sk-3", "region": "eu"}],
    }

    assert redacted(arguments) == {
        "host": "db",
        "login": {"user": "ann", "password": "***"},
        "credentials": "***",
        "token": "***",
        "api_keys": "***",
        "batch": [{"API_KEY": "***", "region": "eu"}],
    }


def test_a_reference_in_tool_arguments_is_no_reference_and_goes_whole() -> None:
    assert redacted({"secret": {"$env": "sk-live-123"}}) == {"secret": "***"}


def test_what_is_not_a_container_is_returned_as_is() -> None:
    assert [redacted(value) for value in (None, "token", 5)] == [None, "token", 5]


def test_literal_secrets_in_a_server_config_are_hidden_and_references_shown() -> None:
    config = parse_server_config(
        {
            **REMOTE,
            "description": "weather",
            "env": {"API_KEY": "sk-123", "DB_PASSWORD": "hunter2", "REGION": "eu", "B": "x"},
            "headers": {"Authorization": "Bearer abc", "X-Api-Key": {"$env": "TRACE_TOKEN"}},
        }
    )

    shown = redacted(config.to_json(), config=True)

    assert shown["env"] == {"API_KEY": "***", "DB_PASSWORD": "***", "REGION": "eu", "B": "x"}
    # A reference names a variable, not its value, so it is shown as is.
    assert shown["headers"] == {"Authorization": "***", "X-Api-Key": {"$env": "TRACE_TOKEN"}}
    assert shown["description"] == "weather"
    assert shown["url"] == REMOTE["url"]


def test_a_schema_block_whose_name_looks_secret_is_redacted_key_by_key_in_a_config() -> None:
    config = parse_server_config({**REMOTE, "oauth": {"required": True, "scopes": ["read"]}})

    shown = redacted(config.to_json(), config=True)

    assert shown["oauth"]["required"] is True
    assert shown["oauth"]["scopes"] == ["read"]
    assert redacted(config.to_json())["oauth"] == "***"  # as tool arguments: whole


def nested(levels: int, inner: Any, key: str = "a") -> Any:
    """``inner`` under ``levels`` objects (``{key: ...}``), built without recursion."""
    for _ in range(levels):
        inner = {key: inner}
    return inner


def depth_of(value: Any) -> int:
    levels = 0
    while isinstance(value, dict | list) and value:
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
        levels += 1
    return levels


def test_a_value_nested_past_the_recursion_limit_is_shown_cut_not_raised() -> None:
    arguments = nested(5000, "leaf")

    shown = redacted_arguments(arguments, "echo")

    assert depth_of(shown) == MAX_DEPTH
    assert shown == nested(MAX_DEPTH, TOO_DEEP)
    assert orjson.loads(orjson.dumps(shown)) == shown  # what the audit keeps is JSON


def test_arrays_nested_past_the_limit_are_cut_too() -> None:
    arguments: Any = ["leaf"]
    for _ in range(3000):
        arguments = [arguments]

    shown = redacted(arguments)

    assert depth_of(shown) == MAX_DEPTH
    assert "leaf" not in orjson.dumps(shown).decode()


def test_the_audit_keeps_arguments_of_any_depth_without_raising() -> None:
    kept = capped_arguments({"text": "hi", "x": nested(3000, "leaf")}, "echo")

    assert kept["text"] == "hi"
    assert depth_of(kept["x"]) == MAX_DEPTH - 1


def test_a_secret_below_the_cut_is_still_scrubbed_from_an_error_text() -> None:
    arguments = {"x": nested(200, {"password": "hunter2-deep", "note": "visible-note"})}
    error = "refused: hunter2-deep, visible-note"

    assert scrubbed(error, arguments, "echo") == f"refused: {SHOWN}, visible-note"


def test_scrubbing_a_secret_nested_past_the_recursion_limit_does_not_raise() -> None:
    arguments = {"api_key": nested(5000, "sk-deep-secret")}

    assert scrubbed("bad key sk-deep-secret", arguments, "echo") == f"bad key {SHOWN}"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "token", "$env", "Password", "b"]), inner, max_size=4
        )
    ),
    max_leaves=40,
)


@given(value=JSON, levels=st.integers(min_value=0, max_value=400))
def test_no_json_value_makes_redaction_raise(value: Any, levels: int) -> None:
    deep = nested(levels, value, key="token" if levels % 2 else "a")

    for config in (False, True):
        orjson.dumps(redacted(deep, config=config))
    orjson.dumps(capped_arguments(deep, "manage_secrets"))
    scrubbed("some error text with token", deep, "manage_secrets")
