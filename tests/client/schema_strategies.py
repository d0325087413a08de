"""Hypothesis strategies: tool input schemas of every shape MCP servers send, and instances.

``tool_schemas()`` draws an object schema whose properties mix typed scalars (with their
constraints and ``format``s), enums and ``const`` (typed or not), nullable unions, schemas
without a type, arrays, nested objects with and without ``additionalProperties``,
``anyOf``/``oneOf``/``allOf``, and ``$ref`` into ``$defs`` or ``definitions``, recursive ones
included.

``candidates(schema)`` draws values shaped like what ``schema`` accepts; the tests keep those
the schema really accepts (``hypothesis-jsonschema`` would do this, but does not run on
this version of Hypothesis).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

Schema = dict[str, Any]
NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["x", "y", "zz"]),
    st.sampled_from([1.5, -2.5]),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text("xyz", max_size=3)),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(NAMES, inner, max_size=2),
    max_leaves=4,
)


def _typed(kind: str, **optional: st.SearchStrategy[Any]) -> st.SearchStrategy[Schema]:
    return st.fixed_dictionaries({"type": st.just(kind)}, optional=optional)


def _leaves(refs: list[str]) -> st.SearchStrategy[Any]:
    described = {"description": st.just("said"), "default": SCALARS, "title": st.just("T")}
    options = [
        _typed(
            "string",
            minLength=st.integers(0, 2),
            maxLength=st.integers(2, 5),
            pattern=st.sampled_from(["^[xyz]*$", "x"]),
            format=st.sampled_from(["date-time", "uri", "email"]),
            **described,
        ),
        _typed(
            "integer",
            minimum=st.integers(-3, 0),
            maximum=st.integers(0, 3),
            exclusiveMinimum=st.integers(-5, -4),
            multipleOf=st.sampled_from([1, 2]),
        ),
        _typed("number", minimum=st.just(-2.5), maximum=st.just(2.5), **described),
        _typed("boolean", **described),
        _typed("null"),
        st.fixed_dictionaries(
            {"enum": st.lists(SCALARS, min_size=1, max_size=4, unique_by=repr)},
            optional={"type": st.just("string"), **described},
        ).filter(_enum_fits_type),
        st.fixed_dictionaries({"const": SCALARS}, optional=described),
        st.sampled_from([{}, {"description": "anything"}, True]),
        st.sampled_from(["string", "integer", "object", "array"]).map(
            lambda kind: {"type": [kind, "null"]}
        ),
    ]
    if refs:
        options.append(st.sampled_from(refs).map(lambda ref: {"$ref": ref}))
    return st.one_of(options)


def _enum_fits_type(schema: Schema) -> bool:
    return "type" not in schema or all(isinstance(v, str) for v in schema["enum"])


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Schema]:
    base = st.fixed_dictionaries(
        {"properties": st.dictionaries(NAMES, children, max_size=3)},
        optional={
            "type": st.just("object"),
            "additionalProperties": st.one_of(st.booleans(), children),
            "description": st.just("an object"),
        },
    )
    return base.flatmap(_with_required)


def _with_required(schema: Schema) -> st.SearchStrategy[Schema]:
    names = sorted(schema["properties"])
    if not names:
        return st.just(schema)
    picked = st.lists(st.sampled_from(names), unique=True, max_size=len(names))
    return picked.map(lambda required: {**schema, "required": required} if required else schema)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        _objects(children),
        st.fixed_dictionaries(
            {"items": children},
            optional={
                "type": st.just("array"),
                "minItems": st.integers(0, 1),
                "maxItems": st.integers(2, 3),
                "uniqueItems": st.just(True),
            },
        ),
        st.lists(children, min_size=1, max_size=3).map(lambda b: {"anyOf": b}),
        st.lists(children, min_size=1, max_size=3).map(lambda b: {"oneOf": b}),
        st.lists(children, min_size=1, max_size=2).map(lambda b: {"allOf": b}),
    )


def subschemas(refs: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(_leaves(refs), _extend, max_leaves=6)


@st.composite
def tool_schemas(draw: st.DrawFn) -> Schema:
    """An MCP ``inputSchema``: an object at the root, maybe with definitions it refers to."""
    keyword = draw(st.sampled_from(["$defs", "definitions"]))
    names = draw(st.lists(st.sampled_from(["node", "item"]), unique=True, max_size=2))
    refs = [f"#/{keyword}/{name}" for name in names]
    root: Schema = draw(_objects(subschemas(refs)))
    if draw(st.booleans()):
        root["type"] = "object"
    if names:
        # Objects, so that every cycle goes through a property (a bare ``$ref`` to itself
        # would send any validator into an endless loop).
        root[keyword] = {name: draw(_objects(subschemas(refs))) for name in names}
    return root


def candidates(schema: Any, root: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped like what ``schema`` accepts (not all of them accepted: check them)."""
    if not isinstance(schema, dict) or depth > 5:
        return JSON_VALUES
    if "$ref" in schema:
        return candidates(resolve(root, schema["$ref"]), root, depth + 1)
    options: list[st.SearchStrategy[Any]] = []
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    if "const" in schema:
        options.append(st.just(schema["const"]))
    for key in ("anyOf", "oneOf", "allOf"):
        options.extend(candidates(branch, root, depth + 1) for branch in schema.get(key, []))
    kinds = schema.get("type", [])
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        options.append(_of_type(kind, schema, root, depth))
    if "properties" in schema and not kinds:
        options.append(_of_type("object", schema, root, depth))
    if "items" in schema and not kinds:
        options.append(_of_type("array", schema, root, depth))
    return st.one_of(options) if options else JSON_VALUES


def _of_type(kind: str, schema: Schema, root: Schema, depth: int) -> st.SearchStrategy[Any]:
    if kind == "object":
        return _object_values(schema, root, depth)
    if kind == "array":
        items = candidates(schema.get("items", {}), root, depth + 1)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=3)
    if kind == "string":
        return st.from_regex("^[xyz]{0,4}$")
    if kind == "integer":
        return st.integers(-4, 4)
    if kind == "number":
        return st.sampled_from([0.5, -1.5, 2.0, 3.25])
    if kind == "boolean":
        return st.booleans()
    return st.none()


def _object_values(schema: Schema, root: Schema, depth: int) -> st.SearchStrategy[Any]:
    properties = schema.get("properties", {})
    values = {name: candidates(sub, root, depth + 1) for name, sub in properties.items()}
    required = {name: values.get(name, JSON_VALUES) for name in schema.get("required", [])}
    optional = {name: value for name, value in values.items() if name not in required}
    extra = schema.get("additionalProperties", True)
    if extra is not False:
        optional["extra"] = candidates(extra, root, depth + 1)
    return st.fixed_dictionaries(required, optional=optional)


def resolve(root: Schema, ref: str) -> Any:
    node: Any = root
    for key in ref.removeprefix("#/").split("/"):
        node = node[key]
    return node


def array_depth(value: Any) -> int:
    """How deep arrays nest in ``value`` (``[[1]]`` is 2)."""
    if isinstance(value, list):
        return 1 + max((array_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return max((array_depth(item) for item in value.values()), default=0)
    return 0
