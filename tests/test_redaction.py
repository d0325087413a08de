from atrium.redaction import redacted
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
