"""The provider-neutral cleanup of a tool's input schema, after ``$ref`` are inlined.

Every rewrite keeps the schema sound: it accepts at least what the original accepted. Exact
rewrites: boolean subschemas become objects, ``const`` a one-value ``enum``, a ``oneOf`` or
``anyOf`` of constants one ``enum`` (their titles go to the description), annotations and
unknown keywords go. Relaxing rewrites (recorded): a ``oneOf`` read as ``anyOf`` (models and
providers cannot check "exactly one"), ``allOf`` merged into its parent, tuple arrays read as
arrays of any of their item schemas.

Then, as seed 004 reads schemas and as every MCP client does: a schema without ``type`` that
names ``properties`` is an object and one with ``items`` an array; an ``enum`` has the type
of its values. Anything else without a type stays untyped (any value); the dialects decide
how to say "any value" to their provider. Objects get ``properties`` and arrays ``items``.

The root must describe an object (MCP ``Tool.inputSchema``), and no provider takes a
combinator there: a root ``anyOf`` of argument sets becomes one object with all their
properties, and the sets are told to the model in the description.
"""

from __future__ import annotations

import json
from typing import Any

from atrium.client.schema_tree import (
    LISTS,
    MAPS,
    SINGLE,
    Relaxations,
    Schema,
    add_note,
    child,
    json_type,
    map_subschemas,
    types_of,
)

_VALIDATION = frozenset(
    {
        "type",
        "enum",
        "const",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "format",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxContains",
        "minContains",
        "maxProperties",
        "minProperties",
        "required",
        "dependentRequired",
    }
)
_KEPT = _VALIDATION | {"title", "description", "default"} | set(SINGLE) | set(MAPS) | set(LISTS)
_GONE_WITH_REFS = frozenset({"$defs", "definitions"})
_RELAXED_IF_DROPPED = frozenset({"dependencies"})
_OBJECT_HINTS = ("properties", "patternProperties", "additionalProperties", "required")
_ARRAY_HINTS = ("items", "prefixItems")


def normalize(schema: Schema, relax: Relaxations) -> Schema:
    """The cleaned schema; its root an object without combinators."""
    return _root(_node(schema, "", relax), relax)


def _node(raw: Any, pointer: str, relax: Relaxations) -> Any:
    if raw is True:
        return {}
    if raw is False:
        return {"not": {}}
    node = _keep_known(raw, pointer, relax)
    node = map_subschemas(node, lambda sub, at: _sub(sub, at, relax), pointer)
    _merge_all_of(node, pointer, relax)
    _fold_const(node)
    _fold_one_of(node, pointer, relax)
    _fold_constant_choices(node)
    _tuple_items(node, pointer, relax)
    _infer_type(node)
    _complete(node)
    return node


def _sub(raw: Any, pointer: str, relax: Relaxations) -> Any:
    # ``additionalProperties: false`` is the one boolean schema every provider understands.
    if raw is False and pointer.endswith("/additionalProperties"):
        return False
    return _node(raw, pointer, relax)


def _keep_known(raw: Schema, pointer: str, relax: Relaxations) -> Schema:
    for key in _RELAXED_IF_DROPPED & raw.keys():
        relax.add(child(pointer, key), "dropped")
    node = {k: v for k, v in raw.items() if k in _KEPT and k not in _GONE_WITH_REFS}
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(node.get(key), bool):  # draft 4's boolean form
            relax.add(child(pointer, key), "draft 4 boolean form dropped")
            del node[key]
    return node


def _fold_const(node: Schema) -> None:
    if "const" in node:
        node["enum"] = [node.pop("const")]


def _fold_one_of(node: Schema, pointer: str, relax: Relaxations) -> None:
    branches = node.pop("oneOf", None)
    if branches is None:
        return
    if "anyOf" in node:
        relax.add(child(pointer, "oneOf"), "dropped beside anyOf")
        return
    if not _disjoint_constants(branches):
        relax.add(child(pointer, "oneOf"), "read as anyOf")
    node["anyOf"] = branches


def _disjoint_constants(branches: list[Any]) -> bool:
    seen: list[str] = []
    for branch in branches:
        if not (isinstance(branch, dict) and "enum" in branch):
            return False
        seen.extend(json.dumps(value, sort_keys=True) for value in branch["enum"])
    return len(seen) == len(set(seen))


def _fold_constant_choices(node: Schema) -> None:
    """``anyOf: [{const, title}, ...]`` (SEP-1330 titled enums) becomes one ``enum``."""
    branches = node.get("anyOf")
    plain = {"enum", "title", "description", "type"}
    if not branches or not all(
        isinstance(b, dict) and b.keys() <= plain and "enum" in b for b in branches
    ):
        return
    del node["anyOf"]
    values = [value for branch in branches for value in branch["enum"]]
    node["enum"] = [v for v in values if v in node["enum"]] if "enum" in node else values
    titles = [
        f"{json.dumps(b['enum'][0])} = {b['title']}"
        for b in branches
        if "title" in b and len(b["enum"]) == 1
    ]
    if titles:
        add_note(node, "Values: " + ", ".join(titles) + ".")


def _merge_all_of(node: Schema, pointer: str, relax: Relaxations) -> None:
    members = node.pop("allOf", None)
    if members is None:
        return
    for member in members:
        if not isinstance(member, dict):
            continue
        for key, value in member.items():
            if _merge_key(node, key, value):
                relax.add(child(pointer, "allOf"), f"'{key}' of a member dropped")


def _merge_key(node: Schema, key: str, value: Any) -> bool:
    """Merge one keyword of an ``allOf`` member; true when something had to be dropped."""
    if key not in node:
        node[key] = value
        return False
    if key == "required":
        node[key] = list(dict.fromkeys([*node[key], *value]))
        return False
    if key == "properties":
        clashes = node[key].keys() & value.keys()
        node[key] = {**value, **node[key]}
        return bool(clashes)
    return bool(node[key] != value)


def _tuple_items(node: Schema, pointer: str, relax: Relaxations) -> None:
    prefix = node.pop("prefixItems", None)
    items = node.get("items")
    if isinstance(items, list):  # draft 7: ``items`` is the tuple, ``additionalItems`` the rest
        prefix, rest = items, node.pop("additionalItems", {})
    else:
        rest = items if items is not None else {}
        node.pop("additionalItems", None)
    if prefix is None:
        return
    relax.add(pointer, "tuple read as an array of any of its item schemas")
    branches = [*prefix, rest] if rest != {"not": {}} else list(prefix)
    node["items"] = {} if {} in branches else {"anyOf": branches}


def _infer_type(node: Schema) -> None:
    if "type" in node or "anyOf" in node:
        return
    if any(key in node for key in _OBJECT_HINTS):
        node["type"] = "object"
    elif any(key in node for key in _ARRAY_HINTS):
        node["type"] = "array"
    elif node.get("enum"):
        found = list(dict.fromkeys(json_type(value) for value in node["enum"]))
        if "integer" in found and "number" in found:
            found.remove("integer")
        node["type"] = found[0] if len(found) == 1 else found


def _complete(node: Schema) -> None:
    declared = types_of(node)
    if "object" in declared:
        node.setdefault("properties", {})
        if "required" in node:
            node["required"] = list(dict.fromkeys(node["required"]))
    if "array" in declared:
        node.setdefault("items", {})


def _root(node: Schema, relax: Relaxations) -> Schema:
    declared = types_of(node)
    if declared and "object" not in declared:
        raise relax.error("", f"type {node['type']!r} is not an object")
    node["type"] = "object"
    node.setdefault("properties", {})
    for key in ("enum", "not"):
        if node.pop(key, None) is not None:
            relax.add(child("", key), "dropped at the root")
    branches = node.pop("anyOf", None)
    if branches is not None:
        _flatten_argument_sets(node, branches, relax)
    return node


def _flatten_argument_sets(node: Schema, branches: list[Any], relax: Relaxations) -> None:
    """A root ``anyOf``: every branch's properties on the root; its ``required`` told."""
    relax.add("/anyOf", "argument sets merged into one object")
    sets: list[str] = []
    for branch in branches:
        if not isinstance(branch, dict) or "object" not in (types_of(branch) or ["object"]):
            continue
        for name, sub in branch.get("properties", {}).items():
            node["properties"].setdefault(name, sub)
        if branch.get("required"):
            sets.append(", ".join(branch["required"]))
    if sets:
        add_note(
            node,
            "Give one of these sets of arguments: "
            + "; ".join(f"({names})" for names in sets)
            + ".",
        )
