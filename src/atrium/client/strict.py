"""Whether a schema in OpenAI's subset also fits strict mode (Structured Outputs).

Strict mode constrains the model's decoding to the schema, so OpenAI accepts there only
schemas it can compile whole (guide "Structured Outputs", "Supported schemas"): the root an
object and not an ``anyOf``; every object with ``additionalProperties: false`` and every
property ``required``; every schema typed or an ``anyOf``; at most 5000 properties, 10 levels
of nesting, 1000 enum values, 120,000 characters of property names and enum values, and
15,000 characters for one enum of more than 250 values.

Atrium sets ``strict: true`` only on a schema that fits and that the conversion did not
relax, so the guarantee the model gives is the tool's own contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atrium.client.schema_openai import FORMATS, KEYWORDS
from atrium.client.schema_tree import Schema, map_subschemas, types_of

MAX_PROPERTIES = 5000
MAX_DEPTH = 10
MAX_ENUM_VALUES = 1000
MAX_STRING_LENGTH = 120_000
LARGE_ENUM = 250
MAX_LARGE_ENUM_LENGTH = 15_000


@dataclass
class _Tally:
    properties: int = 0
    enum_values: int = 0
    string_length: int = 0
    fits: bool = True


def fits_strict(schema: Schema) -> bool:
    """True when OpenAI would take ``schema`` with ``strict: true``."""
    if schema.get("type") != "object" or "anyOf" in schema:
        return False
    tally = _Tally()
    _visit(schema, 1, tally)
    return (
        tally.fits
        and tally.properties <= MAX_PROPERTIES
        and tally.enum_values <= MAX_ENUM_VALUES
        and tally.string_length <= MAX_STRING_LENGTH
    )


def _visit(node: Any, depth: int, tally: _Tally) -> None:
    if node is False:  # ``additionalProperties: false``
        return
    if not (tally.fits and isinstance(node, dict) and _node_fits(node, depth)):
        tally.fits = False
        return
    properties = node.get("properties", {})
    tally.properties += len(properties)
    tally.string_length += sum(len(name) for name in properties)
    _count_enum(node.get("enum"), tally)

    def visit(sub: Any, _at: str) -> Any:
        _visit(sub, depth + 1, tally)
        return sub

    map_subschemas(node, visit, "")


def _node_fits(node: Schema, depth: int) -> bool:
    declared = types_of(node)
    if depth > MAX_DEPTH or not node.keys() <= KEYWORDS:
        return False
    if not declared and "anyOf" not in node:
        return False
    if "format" in node and node["format"] not in FORMATS:
        return False
    if "object" in declared and not _closed_object(node):
        return False
    return "array" not in declared or isinstance(node.get("items"), dict)


def _closed_object(node: Schema) -> bool:
    properties = node.get("properties")
    return (
        isinstance(properties, dict)
        and node.get("additionalProperties") is False
        and sorted(node.get("required", [])) == sorted(properties)
    )


def _count_enum(values: Any, tally: _Tally) -> None:
    if not isinstance(values, list):
        return
    tally.enum_values += len(values)
    length = sum(len(value) for value in values if isinstance(value, str))
    tally.string_length += length
    if len(values) > LARGE_ENUM and length > MAX_LARGE_ENUM_LENGTH:
        tally.fits = False
