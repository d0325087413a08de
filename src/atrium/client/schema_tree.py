"""Walking a JSON Schema as a tree of subschemas, and the error a tool's schema can raise.

Every step of the conversion to a model provider's format (``client.schemas``) rewrites one
node and recurses into its subschemas, located by JSON pointer (RFC 6901) so an error or a
relaxation names the exact place. A step that lets through more than the original schema
did (a keyword dropped, a recursion cut) records a ``Relaxation``: the result stays sound
(it accepts every instance the original accepted) but no longer exact, which decides
OpenAI's ``strict`` flag.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atrium.errors import AtriumError

Schema = dict[str, Any]

# Keywords whose value is a subschema, a map of subschemas, or a list of subschemas
# (JSON Schema 2020-12 Core §10, Validation §6, plus draft 7's ``definitions``,
# ``dependencies``, ``additionalItems`` and the tuple form of ``items``).
SINGLE = (
    "items",
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)
MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")

JSON_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")


class SchemaError(AtriumError):
    """A tool's input schema cannot be converted; the caller skips the tool with a warning."""

    def __init__(self, tool: str, pointer: str, reason: str) -> None:
        self.tool = tool
        self.pointer = pointer or "/"
        self.reason = reason
        super().__init__(f"tool '{tool}': inputSchema at {self.pointer}: {reason}")


@dataclass
class Relaxations:
    """Where the converted schema accepts more than the original, and why."""

    tool: str
    found: list[str] = field(default_factory=list)

    def add(self, pointer: str, what: str) -> None:
        self.found.append(f"{pointer or '/'}: {what}")

    def error(self, pointer: str, reason: str) -> SchemaError:
        return SchemaError(self.tool, pointer, reason)


def child(pointer: str, *keys: str | int) -> str:
    """``pointer`` extended by ``keys``, escaped as RFC 6901 §3 says."""
    for key in keys:
        pointer += "/" + str(key).replace("~", "~0").replace("/", "~1")
    return pointer


def map_subschemas(node: Schema, fn: Callable[[Any, str], Any], pointer: str) -> Schema:
    """A copy of ``node`` with ``fn(subschema, its_pointer)`` applied to each direct subschema."""
    out = dict(node)
    for key in SINGLE:
        value = node.get(key)
        if isinstance(value, list):  # draft 7 tuple ``items``
            out[key] = [fn(item, child(pointer, key, i)) for i, item in enumerate(value)]
        elif key in node and isinstance(value, (dict, bool)):
            out[key] = fn(value, child(pointer, key))
    for key in MAPS:
        value = node.get(key)
        if isinstance(value, dict):
            out[key] = {name: fn(sub, child(pointer, key, name)) for name, sub in value.items()}
    for key in LISTS:
        value = node.get(key)
        if isinstance(value, list):
            out[key] = [fn(item, child(pointer, key, i)) for i, item in enumerate(value)]
    return out


def types_of(node: Schema) -> list[str]:
    """The node's ``type`` as a list; empty when it names none."""
    declared = node.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    return []


def json_type(value: Any) -> str:
    """The JSON type of a Python value as ``json`` loads it (``integer`` before ``number``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def add_note(node: Schema, note: str) -> None:
    """Append ``note`` to the node's description, for the model to read."""
    description = node.get("description")
    if isinstance(description, str) and description:
        separator = " " if description.endswith((".", "!", "?")) else ". "
        node["description"] = f"{description}{separator}{note}"
    else:
        node["description"] = note


def drop_keywords(node: Schema, keys: set[str], pointer: str, relax: Relaxations) -> None:
    """Remove ``keys`` from ``node``, recording each as a relaxation.

    A dropped constraint with a plain value (``minLength: 1``) is still told to the model in
    the description, so it can keep to it even though the provider cannot check it."""
    told: list[str] = []
    for key in sorted(keys & node.keys()):
        value = node.pop(key)
        relax.add(child(pointer, key), "dropped")
        if not isinstance(value, dict) and not (
            isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value)
        ):
            told.append(f"{key} {json.dumps(value)}")
    if told:
        add_note(node, "Also: " + ", ".join(told) + ".")
