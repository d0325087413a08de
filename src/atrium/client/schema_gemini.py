"""A cleaned schema as a Gemini ``Schema`` (the OpenAPI 3.0 subset of function declarations).

What the Gemini API takes (``v1beta`` ``Schema``; google-genai ``types.Schema``): one
``type`` per schema (the SDK's ``Type`` is case-insensitive, so JSON Schema's lowercase names
are kept and the output stays valid JSON Schema), ``nullable`` instead of a ``"null"`` type,
``enum`` of strings only, ``format`` ``date-time`` for strings (the Developer API refuses
others), ``int32``/``int64`` and ``float``/``double`` for numbers, and ``title``,
``description``, ``properties``, ``required``, ``items``, ``anyOf``, ``minimum``/``maximum``,
``minLength``/``maxLength``/``pattern``, ``minItems``/``maxItems``,
``minProperties``/``maxProperties``. No ``$ref``, no ``additionalProperties`` (Vertex has
them, the Developer API does not), no ``exclusiveMinimum``, ``uniqueItems``, ``not``.

So: a list of types becomes an ``anyOf`` of one schema per type, each with its own
keywords, and ``"null"`` becomes ``nullable``; a non-string ``enum`` is told in the
description; ``properties`` only on objects (an object with none carries no
``properties``: Gemini refuses an empty map), ``required`` only names present properties.
A schema without a type is an ``anyOf`` of every type (Gemini wants a ``type`` unless there
is an ``anyOf``), arrays nested at most ``ANY_DEPTH`` deep.
"""

from __future__ import annotations

import json
from typing import Any

from atrium.client.schema_tree import (
    Relaxations,
    Schema,
    add_note,
    child,
    drop_keywords,
    types_of,
)

ANY_DEPTH = 2
_COMMON = frozenset({"type", "title", "description", "nullable", "format", "enum"})
_BY_TYPE = {
    "string": frozenset({"minLength", "maxLength", "pattern"}),
    "integer": frozenset({"minimum", "maximum"}),
    "number": frozenset({"minimum", "maximum"}),
    "boolean": frozenset(),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "object": frozenset({"properties", "required", "minProperties", "maxProperties"}),
}
_TYPED = frozenset().union(*_BY_TYPE.values())
_FORMATS = {"string": {"date-time"}, "integer": {"int32", "int64"}, "number": {"float", "double"}}
_DESCRIBES = frozenset({"title", "description"})


def any_value(depth: int = ANY_DEPTH) -> Schema:
    """Every JSON value, as Gemini can say it."""
    kinds: list[Schema] = [{"type": t} for t in ("string", "number", "boolean", "object")]
    if depth:
        kinds.append({"type": "array", "items": any_value(depth - 1)})
    return {"anyOf": kinds, "nullable": True}


def gemini_schema(core: Schema, relax: Relaxations) -> Schema:
    """``core`` (``schema_core.normalize``'s output) as a Gemini ``Schema``."""
    return _node(core, "", relax)


def _node(raw: Any, pointer: str, relax: Relaxations) -> Schema:
    node = dict(raw)
    if "default" in node:
        add_note(node, f"Default: {json.dumps(node.pop('default'))}.")
    nullable = _take_null(node)
    if "anyOf" in node:
        out = _choices(node, pointer, relax)
    else:
        kinds = [t for t in types_of(node) if t != "null"]
        if not kinds:
            out = _untyped(node, pointer, relax)
        elif len(kinds) == 1:
            out = _typed(node, kinds[0], pointer, relax)
        else:
            out = _split(node, kinds, pointer, relax)
    if nullable:
        out["nullable"] = True
    return out


def _take_null(node: Schema) -> bool:
    """Remove every way ``node`` admits null; true when it did."""
    found = False
    declared = types_of(node)
    if "null" in declared:
        found = True
        rest = [t for t in declared if t != "null"]
        node["type"] = rest if len(rest) != 1 else rest[0]
    if isinstance(node.get("enum"), list) and None in node["enum"]:
        found = True
        node["enum"] = [v for v in node["enum"] if v is not None]
    branches = node.get("anyOf")
    if isinstance(branches, list) and {"type": "null"} in branches:
        found = True
        rest = [b for b in branches if b != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1:
            node.update(_merge_single(rest[0], node))
        elif rest:
            node["anyOf"] = rest
    return found


def _merge_single(branch: Any, node: Schema) -> Schema:
    merged = dict(branch) if isinstance(branch, dict) else {}
    for key in _DESCRIBES & node.keys():
        merged[key] = node[key]
    return merged


def _choices(node: Schema, pointer: str, relax: Relaxations) -> Schema:
    _type_into_branches(node, pointer, relax)
    drop_keywords(node, set(node) - _DESCRIBES - {"anyOf", "nullable"}, pointer, relax)
    branches = [
        _node(branch, child(pointer, "anyOf", i), relax)
        for i, branch in enumerate(node.pop("anyOf"))
    ]
    return {**_described(node), "anyOf": branches}


def _type_into_branches(node: Schema, pointer: str, relax: Relaxations) -> None:
    """``type: T`` beside ``anyOf`` is ``T`` in every branch: Gemini wants one or the other."""
    declared = types_of(node)
    if len(declared) != 1:
        return
    del node["type"]
    for i, branch in enumerate(node["anyOf"]):
        if not isinstance(branch, dict):
            continue
        if types_of(branch) not in ([], declared):
            relax.add(child(pointer, "anyOf", i), f"type {declared[0]} not applied")
        else:
            node["anyOf"][i] = {**branch, "type": declared[0]}


def _untyped(node: Schema, pointer: str, relax: Relaxations) -> Schema:
    drop_keywords(node, set(node) - _DESCRIBES - {"nullable"}, pointer, relax)
    return {**_described(node), **any_value()}


def _split(node: Schema, kinds: list[str], pointer: str, relax: Relaxations) -> Schema:
    branches = [_typed({**node, "type": kind}, kind, pointer, relax) for kind in kinds]
    for branch in branches:
        for key in _DESCRIBES:
            branch.pop(key, None)
    return {**_described(node), "anyOf": branches}


def _typed(node: Schema, kind: str, pointer: str, relax: Relaxations) -> Schema:
    # Keywords of the other types say nothing about this one: dropping them is exact.
    others = _TYPED - _BY_TYPE[kind]
    node = {k: v for k, v in node.items() if k not in others}
    node["type"] = kind
    _enum(node, kind, pointer, relax)
    if "format" in node and node["format"] not in _FORMATS.get(kind, set()):
        add_note(node, f"Format: {node.pop('format')}.")
    drop_keywords(node, set(node) - _COMMON - _BY_TYPE[kind], pointer, relax)
    if kind == "array":
        node["items"] = _node(node.get("items", {}), child(pointer, "items"), relax)
    if kind == "object":
        _object(node, pointer, relax)
    return node


def _enum(node: Schema, kind: str, pointer: str, relax: Relaxations) -> None:
    values = node.get("enum")
    if values is None or (kind == "string" and all(isinstance(v, str) for v in values)):
        return
    del node["enum"]
    relax.add(child(pointer, "enum"), "told, not enforced: Gemini enums are strings")
    add_note(node, "One of: " + ", ".join(json.dumps(v) for v in values) + ".")


def _object(node: Schema, pointer: str, relax: Relaxations) -> None:
    properties = {
        name: _node(sub, child(pointer, "properties", name), relax)
        for name, sub in node.pop("properties", {}).items()
    }
    required = [name for name in node.pop("required", []) if name in properties]
    if properties:
        node["properties"] = properties
    if required:
        node["required"] = required


def _described(node: Schema) -> Schema:
    return {key: node[key] for key in ("title", "description") if key in node}
