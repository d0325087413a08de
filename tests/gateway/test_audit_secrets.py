"""The audit keeps no secret argument: ``manage_secrets``' ``value`` is hidden whatever its key
says, and an error that quotes the arguments is kept without the values hidden from them.
Through the real gateway: ``tests/e2e/test_secrets.py``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from atrium.gateway.audit import capped_arguments
from atrium.redaction import scrubbed

VALUE = 'pa55-w0rd-"quoted"-é-0123456789'


class ManageSecretsArguments(BaseModel):
    """The shape the SDK validates ``manage_secrets`` arguments with."""

    action: str
    name: str
    value: Any = None


def sdk_error(arguments: dict[str, Any]) -> str:
    """The text the SDK answers for arguments its model refuses: pydantic quotes the input."""
    with pytest.raises(ValidationError) as caught:
        ManageSecretsArguments.model_validate(arguments)
    return f"Error executing tool manage_secrets: {caught.value}"


def test_the_value_of_manage_secrets_is_hidden_and_the_rest_kept() -> None:
    arguments = {"action": "set", "name": "API_TOKEN", "value": VALUE, "scope": "project"}

    kept = capped_arguments(arguments, "manage_secrets")

    assert kept == {"action": "set", "name": "API_TOKEN", "value": "***", "scope": "project"}


def test_a_value_argument_of_another_tool_is_kept() -> None:
    assert capped_arguments({"key": "theme", "value": "dark"}, "set_setting") == {
        "key": "theme",
        "value": "dark",
    }


def test_an_error_quoting_refused_arguments_keeps_no_hidden_value() -> None:
    arguments = {"name": "API_TOKEN", "value": VALUE}  # no action: the SDK's model refuses it
    error = sdk_error(arguments)
    assert "input_value=" in error  # what would leak

    kept = scrubbed(error, arguments, "manage_secrets")

    assert kept is not None
    assert "Field required" in kept
    for part in (VALUE, VALUE[:12], VALUE[-12:], "0123456789"):
        assert part not in kept


@pytest.mark.parametrize(
    "error",
    [
        f"bad value {VALUE} given",
        'bad value "pa55-w0rd-\\"quoted\\"-\\u00e9-0123456789" given',  # JSON-escaped
        f"bad value {VALUE!r} given",  # Python's repr
        f"bad value {VALUE[:15]}",  # cut where the audit cuts error texts
    ],
)
def test_every_form_an_error_quotes_a_hidden_value_in_is_scrubbed(error: str) -> None:
    kept = scrubbed(error, {"action": "set", "name": "A", "value": VALUE}, "manage_secrets")

    assert kept is not None
    assert kept.startswith("bad value ")
    assert "***" in kept
    assert "0123456789" not in kept
    assert "pa55-w0rd" not in kept


def test_secret_looking_keys_are_scrubbed_too_and_other_text_is_left_alone() -> None:
    arguments = {"api_key": "sk-live-42424242", "region": "eu-west-1"}
    error = "upstream refused key sk-live-42424242 in region eu-west-1"

    assert scrubbed(error, arguments, "connect") == "upstream refused key *** in region eu-west-1"
    assert scrubbed(error, {"region": "eu-west-1"}, "connect") == error
    assert scrubbed(None, arguments, "connect") is None
