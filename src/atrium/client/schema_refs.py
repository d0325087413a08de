"""Inlining ``$ref`` (JSON Schema 2020-12 Core §8.2.3): no provider format keeps references.

References inside the schema are followed: ``#``, JSON pointers (``#/$defs/x``,
``#/definitions/x``, any path) and plain-name fragments naming an ``$anchor``. A reference
met again while it is being expanded is a cycle: there the schema becomes the permissive
shape of its target (its type, nothing more), with a description saying so, and the cut is
recorded as a relaxation. A reference to another document cannot be followed and is an
error naming the tool and the pointer. ``$defs``/``definitions`` go once inlined.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from atrium.client.schema_tree import Relaxations, Schema, map_subschemas, types_of

# Past this many nodes the expansion of shared definitions has exploded; no model wants it.
MAX_NODES = 20_000

_DEFINITIONS = ("$defs", "definitions")
_DYNAMIC = ("$dynamicRef", "$recursiveRef")


class _Inliner:
    def __init__(self, document: Schema, relax: Relaxations) -> None:
        self.document = document
        self.relax = relax
        self.anchors: dict[str, str] = {}
        self.nodes = 0
        self.base = str(document.get("$id", "")).split("#")[0]
        self._collect_anchors(document, "")

    def _collect_anchors(self, node: Any, pointer: str) -> None:
        if not isinstance(node, dict):
            return
        anchor = node.get("$anchor")
        if isinstance(anchor, str):
            self.anchors.setdefault(anchor, pointer)
        map_subschemas(node, lambda sub, at: self._collect_anchors(sub, at), pointer)

    def expand(self, node: Any, pointer: str, stack: tuple[str, ...]) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.relax.error(pointer, f"more than {MAX_NODES} nodes once $ref are inlined")
        if not isinstance(node, dict):
            return node
        if any(key in node for key in _DYNAMIC):
            self.relax.add(pointer, "dynamic reference left open")
            return {k: v for k, v in node.items() if k not in _DYNAMIC}
        if isinstance(node.get("$ref"), str):
            return self._expand_ref(node, pointer, stack)
        bare = {k: v for k, v in node.items() if k not in _DEFINITIONS}
        return map_subschemas(bare, lambda sub, at: self.expand(sub, at, stack), pointer)

    def _expand_ref(self, node: Schema, pointer: str, stack: tuple[str, ...]) -> Any:
        target_pointer = self._target(node["$ref"], pointer)
        target = self._lookup(target_pointer, pointer, node["$ref"])
        if target_pointer in stack:
            expanded = _cut(target, target_pointer)
            self.relax.add(pointer, f"recursion into {target_pointer or '/'} cut")
        else:
            expanded = self.expand(target, target_pointer, (*stack, target_pointer))
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if not siblings:
            return expanded
        rest = self.expand(siblings, pointer, stack)
        if not isinstance(expanded, dict):
            return {"allOf": [expanded, rest]}
        notes = {k: rest.pop(k) for k in ("description", "title") if k in rest}
        merged = {"allOf": [expanded, rest]} if rest else dict(expanded)
        return {**merged, **notes}

    def _target(self, ref: str, pointer: str) -> str:
        if self.base and ref.startswith(self.base):
            ref = ref[len(self.base) :]
        if not ref.startswith("#"):
            raise self.relax.error(pointer, f"$ref '{ref}' points outside the schema")
        fragment = unquote(ref[1:])
        if fragment == "" or fragment.startswith("/"):
            return fragment
        if fragment in self.anchors:
            return self.anchors[fragment]
        raise self.relax.error(pointer, f"$ref '{ref}' names no $anchor of the schema")

    def _lookup(self, target: str, pointer: str, ref: str) -> Any:
        node: Any = self.document
        for raw in target.split("/")[1:]:
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise self.relax.error(pointer, f"$ref '{ref}' resolves to nothing")
        return node


def _cut(target: Any, target_pointer: str) -> Schema:
    """Where a cycle recurs: the target's type only, and a word for the model."""
    cut: Schema = {
        "description": (
            f"Same shape as {'#' + target_pointer}, which contains it (recursive; "
            "not expanded further)."
        )
    }
    declared = types_of(target) if isinstance(target, dict) else []
    if len(declared) == 1:
        cut["type"] = declared[0]
    return cut


def inline_refs(schema: Schema, relax: Relaxations) -> Schema:
    """``schema`` with every ``$ref`` replaced by what it points to; cycles cut."""
    inliner = _Inliner(schema, relax)
    # The root is being expanded from the start, so a "#" inside it is already a cycle.
    return dict(inliner.expand(schema, "", ("",)))
