"""A cleaned schema in the JSON Schema subset OpenAI's function tools accept.

OpenAI checks function ``parameters`` against the subset its Structured Outputs guide lists,
``strict`` or not: keywords outside it (``uniqueItems``, ``minLength``, ``not``, ...) and
``format``s outside its nine are refused with ``invalid_function_parameters``, and every
schema needs a ``type`` (or an ``anyOf``). So the subset is kept for both modes: a dropped
constraint is told in the description and recorded as a relaxation; a ``format`` is only an
annotation, so an unknown one is told and dropped. A schema that says nothing of its type
becomes every JSON type, arrays nested at most ``ANY_DEPTH`` deep (a ``type`` is needed at
every level, and there are no references to recurse with once they are inlined).
``additionalProperties`` is kept only as ``false``: the one form strict mode knows.
"""

from __future__ import annotations

import json
from typing import Any

from atrium.client.schema_tree import (
    Relaxations,
    Schema,
    add_note,
    drop_keywords,
    map_subschemas,
)

KEYWORDS = frozenset(
    {
        "type",
        "title",
        "description",
        "enum",
        "anyOf",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "pattern",
        "format",
        "multipleOf",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
    }
)
FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
ANY_DEPTH = 2
_ANY_TYPES = ["string", "number", "boolean", "object", "array", "null"]


def any_value(depth: int = ANY_DEPTH) -> Schema:
    """Every JSON value, as OpenAI can say it: with a ``type``."""
    if depth == 0:
        return {"type": [t for t in _ANY_TYPES if t != "array"], "properties": {}}
    return {"type": list(_ANY_TYPES), "properties": {}, "items": any_value(depth - 1)}


def openai_schema(core: Schema, relax: Relaxations) -> Schema:
    """``core`` (``schema_core.normalize``'s output) in OpenAI's subset."""
    converted: Schema = _node(core, "", relax)
    return converted


def _node(raw: Any, pointer: str, relax: Relaxations) -> Any:
    if isinstance(raw, bool):  # ``additionalProperties: false``, the one left
        return raw
    node = dict(raw)
    _tell_default(node)
    if "format" in node and node["format"] not in FORMATS:
        add_note(node, f"Format: {node.pop('format')}.")
    if "patternProperties" in node and node.get("additionalProperties") is False:
        drop_keywords(node, {"additionalProperties"}, pointer, relax)
    if node.get("additionalProperties") is True:
        del node["additionalProperties"]
    elif isinstance(node.get("additionalProperties"), dict):
        drop_keywords(node, {"additionalProperties"}, pointer, relax)
    drop_keywords(node, set(node) - KEYWORDS, pointer, relax)
    if "type" not in node and "anyOf" not in node:
        described = {k: node.pop(k) for k in ("title", "description") if k in node}
        return {**any_value(), **node, **described}
    return map_subschemas(node, lambda sub, at: _node(sub, at, relax), pointer)


def _tell_default(node: Schema) -> None:
    # Not a constraint, and not in the subset: the model still gains from knowing it.
    if "default" in node:
        add_note(node, f"Default: {json.dumps(node.pop('default'))}.")
