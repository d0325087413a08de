"""Tool arguments written on a command line: a JSON object, ``key=value`` pairs, or both.

A value is read as JSON when it parses (``n=3``, ``on=true``, ``ids=[1,2]``, ``q="3"``), else
taken as the string it is (``name=nope``). When the tool's ``inputSchema`` says a property is
a string, its value stays the text as written, so ``name=123`` is the string ``"123"``.
Pairs override keys of the JSON object. Every error is a ``ValueError`` naming the culprit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO


def read_json_text(value: str, stdin: TextIO) -> str:
    """``--args`` as given: inline JSON, ``@file`` for a file's content, ``-`` for stdin."""
    if value == "-":
        return stdin.read()
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return value


def parse_arguments(
    json_text: str | None,
    pairs: Sequence[str],
    input_schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The arguments object of a ``tools/call``."""
    arguments = _json_object(json_text) if json_text is not None else {}
    properties = (input_schema or {}).get("properties")
    for pair in pairs:
        key, value = _split(pair)
        schema = properties.get(key) if isinstance(properties, Mapping) else None
        arguments[key] = value if _is_string(schema) else _value(value)
    return arguments


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--args must be a JSON object, not {type(value).__name__}")
    return value


def _split(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{pair!r} is not key=value")
    return key.strip(), value


def _value(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's extension, not JSON


def _is_string(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return False
    if isinstance(branches := schema.get("anyOf"), list):  # Optional[str] in pydantic's schemas
        kinds = [b.get("type") for b in branches if isinstance(b, Mapping)]
        return "string" in kinds and set(kinds) <= {"string", "null"}
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind) <= {"string", "null"} and "string" in kind
    return kind == "string"
