"""Tool arguments of ``atrium plugins mcp call``: ``--args`` JSON and ``key=value`` pairs
(``atrium.client.arguments``)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from atrium.client.arguments import parse_arguments, read_json_text


def test_pair_values_are_json_when_they_parse_and_strings_otherwise() -> None:
    pairs = ["n=3", "on=true", "ids=[1, 2]", 'quoted="7"', "name=nope", "empty=", "none=null"]

    arguments = parse_arguments(None, pairs)

    assert arguments == {
        "n": 3,
        "on": True,
        "ids": [1, 2],
        "quoted": "7",
        "name": "nope",
        "empty": "",
        "none": None,
    }


def test_a_value_may_contain_equals_signs() -> None:
    assert parse_arguments(None, ["query=a=b"]) == {"query": "a=b"}


def test_a_string_property_of_the_schema_keeps_the_text_as_written() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "count": {"type": "integer"},
        },
    }

    arguments = parse_arguments(None, ["name=123", "label=true", "count=4"], schema)

    assert arguments == {"name": "123", "label": "true", "count": 4}


def test_nan_and_infinity_are_strings_not_numbers() -> None:
    assert parse_arguments(None, ["a=NaN", "b=Infinity"]) == {"a": "NaN", "b": "Infinity"}


def test_pairs_override_keys_of_the_json_object() -> None:
    arguments = parse_arguments('{"a": 1, "b": {"c": 2}}', ["a=5"])

    assert arguments == {"a": 5, "b": {"c": 2}}


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "3"])
def test_args_must_be_a_json_object(text: str) -> None:
    with pytest.raises(ValueError, match="JSON object"):
        parse_arguments(text, [])


def test_args_that_are_not_json_are_refused() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_arguments('{"a": ', [])


@pytest.mark.parametrize("pair", ["flag", "=value", " =x"])
def test_a_pair_needs_a_key_and_an_equals_sign(pair: str) -> None:
    with pytest.raises(ValueError, match="not key=value"):
        parse_arguments(None, [pair])


def test_args_text_comes_inline_from_a_file_or_from_stdin(tmp_path: Path) -> None:
    (tmp_path / "args.json").write_text('{"from": "file"}')

    assert read_json_text('{"a": 1}', io.StringIO()) == '{"a": 1}'
    assert read_json_text(f"@{tmp_path / 'args.json'}", io.StringIO()) == '{"from": "file"}'
    assert read_json_text("-", io.StringIO('{"from": "stdin"}')) == '{"from": "stdin"}'


def test_an_args_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing\.json"):
        read_json_text(f"@{tmp_path / 'missing.json'}", io.StringIO())
