"""Converting MCP tool schemas to each model API's tool format (``atrium.client.schemas``).

Property tests draw tool schemas of every shape (``schema_strategies``) and check, for each
format: the output is a valid JSON Schema (Draft 2020-12 meta-schema), it accepts every
instance the input accepted (Gemini's ``nullable`` read as OpenAPI 3.0 means it), and
``strict: true`` appears only on schemas that pass ``openai_strict_problems``, written here
from OpenAI's Structured Outputs guide rather than from the code under test.

Two readings are the conversion's, documented and kept here: a schema without ``type`` that
names ``properties`` (or ``required``, ``additionalProperties``) is an object and one with
``items`` an array (``as_intended``); and "any value" is said to OpenAI and Gemini with
arrays nested at most two deep, so deeper instances are not compared.

The golden files in ``golden/`` hold the tools of the everything test server and of the
built-in ``atrium`` server in all four formats. To rewrite them after a deliberate change:
``ATRIUM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/client/test_schemas.py``, then
review the diff.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.validators import Draft202012Validator, validator_for
from mcp.client.client import Client

from atrium.client.schemas import (
    FORMATS,
    Format,
    SchemaError,
    ToolSpec,
    resource_tools,
    to_provider,
    to_provider_all,
)
from atrium.servers.atrium.server import create_server as create_atrium_server
from atrium.settings import Settings, load_settings
from atrium_everything import create_server as create_everything_server
from tests.cli.helpers import run_atrium
from tests.client.schema_strategies import array_depth, candidates, tool_schemas
from tests.servers.helpers import serving

GOLDEN = Path(__file__).parent / "golden"
STRICT_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6"}
STRICT_FORMATS |= {"uuid"}
STRICT_KEYWORDS = {"type", "description", "title", "enum", "anyOf", "properties", "required"}
STRICT_KEYWORDS |= {"additionalProperties", "items", "pattern", "format", "multipleOf"}
STRICT_KEYWORDS |= {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
STRICT_KEYWORDS |= {"minItems", "maxItems"}


def parameters(converted: dict[str, Any], fmt: Format) -> dict[str, Any]:
    """The JSON Schema inside a converted tool, Gemini's ``nullable`` read as JSON Schema."""
    if fmt == "openai":
        return dict(converted["function"]["parameters"])
    if fmt == "openai-responses":
        return dict(converted["parameters"])
    if fmt == "anthropic":
        return dict(converted["input_schema"])
    return dict(openapi_nullable(converted.get("parameters", {"type": "object"})))


def strict_flag(converted: dict[str, Any], fmt: Format) -> bool | None:
    flag: bool | None = {
        "openai": converted.get("function", {}),
        "openai-responses": converted,
    }.get(fmt, {}).get("strict")
    return flag


def openapi_nullable(schema: Any) -> Any:
    if isinstance(schema, list):
        return [openapi_nullable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: openapi_nullable(value) for key, value in schema.items() if key != "nullable"}
    if "properties" in schema:
        out["properties"] = {k: openapi_nullable(v) for k, v in schema["properties"].items()}
    return {"anyOf": [out, {"type": "null"}]} if schema.get("nullable") else out


def as_intended(schema: Any) -> Any:
    """The input with the types the conversion reads into it made explicit."""
    if isinstance(schema, list):
        return [as_intended(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: as_intended(value) for key, value in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: as_intended(v) for k, v in schema["properties"].items()}
    for key in ("$defs", "definitions"):
        if key in schema:
            out[key] = {k: as_intended(v) for k, v in schema[key].items()}
    if not ({"type", "anyOf", "oneOf", "$ref"} & schema.keys()):
        if {"properties", "required", "additionalProperties"} & schema.keys():
            out["type"] = "object"
        elif "items" in schema:
            out["type"] = "array"
    return out


def openai_strict_problems(schema: dict[str, Any]) -> list[str]:
    """What keeps ``schema`` out of OpenAI strict mode, per the Structured Outputs guide."""
    problems = []
    if schema.get("type") != "object" or "anyOf" in schema:
        problems.append("root is not an object")
    counts = {"properties": 0, "enum": 0}
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict):
            problems.append(f"boolean schema {node}")
            continue
        problems.extend(strict_node_problems(node, depth))
        counts["properties"] += len(node.get("properties", {}))
        counts["enum"] += len(node.get("enum", []))
        children = [*node.get("properties", {}).values(), *node.get("anyOf", [])]
        children += [node["items"]] if "items" in node else []
        stack.extend((sub, depth + 1) for sub in children)
    if counts["properties"] > 5000 or counts["enum"] > 1000:
        problems.append("too large")
    return problems


def strict_node_problems(node: dict[str, Any], depth: int) -> list[str]:
    problems = [f"keyword {key}" for key in node.keys() - STRICT_KEYWORDS]
    if "type" not in node and "anyOf" not in node:
        problems.append("no type")
    if node.get("format", "date") not in STRICT_FORMATS:
        problems.append(f"format {node['format']}")
    if depth > 10:
        problems.append("deeper than 10")
    kinds: list[Any] = node["type"] if isinstance(node.get("type"), list) else [node.get("type")]
    if "object" in kinds:
        if node.get("additionalProperties") is not False:
            problems.append("object open to additional properties")
        if set(node.get("required", [])) != set(node.get("properties", {})):
            problems.append("optional property")
    return problems


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=tool_schemas(), data=st.data())
def test_every_conversion_is_valid_sound_and_strict_only_when_it_may_be(
    schema: dict[str, Any], data: st.DataObject
) -> None:
    original = copy.deepcopy(schema)
    intended = validator_for(schema)(as_intended(schema))
    outputs = {fmt: to_provider(ToolSpec("t", "A tool.", schema), fmt) for fmt in FORMATS}
    assert schema == original
    for fmt, converted in outputs.items():
        if strict_flag(converted, fmt):
            assert openai_strict_problems(parameters(converted, fmt)) == []
    # Formats often convert to the same schema (two or three distinct of four): each distinct
    # one is checked once, against the meta-schema (~3 ms a time) and every accepted instance.
    distinct: dict[str, tuple[Format, dict[str, Any]]] = {}
    for fmt, converted in outputs.items():
        converted_schema = parameters(converted, fmt)
        distinct.setdefault(json.dumps(converted_schema, sort_keys=True), (fmt, converted_schema))
    validators = []
    for fmt, converted_schema in distinct.values():
        Draft202012Validator.check_schema(converted_schema)
        validators.append((fmt, Draft202012Validator(converted_schema)))
    for _ in range(4):
        instance = data.draw(candidates(schema, schema))
        if array_depth(instance) > 2 or not intended.is_valid(instance):
            continue
        for fmt, validator in validators:
            assert validator.is_valid(instance), (fmt, instance)


def tool(schema: dict[str, Any]) -> ToolSpec:
    return ToolSpec("mcp__s__t", "A tool.", schema)


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def test_a_closed_schema_with_every_property_required_is_strict() -> None:
    schema = {**obj(a={"type": "string"}), "required": ["a"], "additionalProperties": False}

    assert to_provider(tool(schema), "openai")["function"]["strict"] is True
    assert to_provider(tool(schema), "openai-responses")["strict"] is True


@pytest.mark.parametrize(
    "change",
    [
        {"required": []},
        {"additionalProperties": True},
        {"properties": {"a": {"type": "string", "minLength": 2}}},
        {"properties": {"a": {"oneOf": [{"type": "string"}, {"type": "string", "pattern": "x"}]}}},
    ],
)
def test_an_open_optional_or_relaxed_schema_is_not_strict(change: dict[str, Any]) -> None:
    schema = {**obj(a={"type": "string"}), "required": ["a"], "additionalProperties": False}

    converted = to_provider(tool({**schema, **change}), "openai")

    assert converted["function"]["strict"] is False


def test_const_becomes_a_one_value_enum_and_one_of_becomes_any_of() -> None:
    schema = obj(a={"const": "x"}, b={"oneOf": [{"type": "string"}, {"type": "integer"}]})

    properties = to_provider(tool(schema), "openai")["function"]["parameters"]["properties"]

    assert properties["a"] == {"enum": ["x"], "type": "string"}
    assert properties["b"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}


def test_a_nullable_union_is_nullable_for_gemini_and_stays_a_union_elsewhere() -> None:
    schema = obj(a={"type": ["integer", "null"]}, b={"type": ["string", "integer"]})

    gemini = to_provider(tool(schema), "gemini")["parameters"]["properties"]
    anthropic = to_provider(tool(schema), "anthropic")["input_schema"]["properties"]

    assert gemini["a"] == {"type": "integer", "nullable": True}
    assert gemini["b"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert anthropic["a"] == {"type": ["integer", "null"]}


def test_a_recursive_reference_is_cut_where_it_recurs_and_says_so() -> None:
    node = obj(children={"type": "array", "items": {"$ref": "#/$defs/node"}})
    schema = {**obj(root={"$ref": "#/$defs/node"}), "$defs": {"node": node}}

    converted = to_provider(tool(schema), "anthropic")["input_schema"]

    cut = converted["properties"]["root"]["properties"]["children"]["items"]
    assert cut["type"] == "object"
    assert "#/$defs/node" in cut["description"]
    assert "$defs" not in converted


@pytest.mark.parametrize(
    ("schema", "pointer"),
    [
        (obj(a={"$ref": "https://example.com/a.json"}), "/properties/a"),
        (obj(a={"$ref": "#/$defs/missing"}), "/properties/a"),
        (obj(a={"type": "text"}), "/properties/a/type"),
        ({"type": "string"}, "/"),
    ],
)
def test_a_schema_that_cannot_be_converted_names_the_tool_and_the_pointer(
    schema: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        to_provider(tool(schema), "openai")

    assert (caught.value.tool, caught.value.pointer) == ("mcp__s__t", pointer)


def test_tools_that_cannot_be_converted_are_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = ToolSpec("mcp__s__bad", "", obj(a={"$ref": "#/nowhere"}))

    with caplog.at_level(logging.WARNING, logger="atrium.client.schemas"):
        converted = to_provider_all([bad, tool(obj())], "anthropic")

    assert [item["name"] for item in converted] == ["mcp__s__t"]
    assert "mcp__s__bad" in caplog.text


def test_what_a_provider_cannot_check_is_told_in_the_description() -> None:
    schema = obj(url={"type": "string", "format": "uri", "minLength": 3, "default": "x"})

    url = to_provider(tool(schema), "openai")["function"]["parameters"]["properties"]["url"]

    assert url.keys() == {"type", "description"}
    assert all(word in url["description"] for word in ("uri", "minLength 3", 'Default: "x"'))


def test_root_argument_sets_become_one_object_for_every_provider() -> None:
    schema = {**obj(a={"type": "string"}), "anyOf": [{"required": ["a"]}, obj(b={})]}

    for fmt in FORMATS:
        converted = parameters(to_provider(tool(schema), fmt), fmt)
        assert "anyOf" not in converted
        assert {"a", "b"} <= converted["properties"].keys()


def test_a_gemini_tool_without_arguments_has_no_parameters() -> None:
    assert to_provider(tool({"type": "object"}), "gemini") == {
        "name": "mcp__s__t",
        "description": "A tool.",
    }


def test_the_resource_tools_are_the_seeds_in_every_format() -> None:
    listing, reading = resource_tools()

    anthropic = [to_provider(spec, "anthropic") for spec in (listing, reading)]

    assert [spec["name"] for spec in anthropic] == ["list_mcp_resources", "read_mcp_resource"]
    assert anthropic[0]["description"] == "Lists resources provided by MCP servers."
    assert anthropic[0]["input_schema"]["properties"].keys() == {"server", "cursor"}
    assert "required" not in anthropic[0]["input_schema"]
    assert anthropic[1]["input_schema"]["required"] == ["server", "uri"]
    assert all(spec["input_schema"]["additionalProperties"] is False for spec in anthropic)
    for fmt in FORMATS:
        assert parameters(to_provider(reading, fmt), fmt)["required"] == ["server", "uri"]


async def listed_tools(server: Any, prefix: str) -> list[ToolSpec]:
    async with serving(server) as url, Client(f"{url}/mcp") as client:
        tools = (await client.list_tools()).tools
    return [
        ToolSpec(f"mcp__{prefix}__{t.name}", t.description or "", t.input_schema) for t in tools
    ]


def check_golden(name: str, tools: list[ToolSpec]) -> None:
    converted = {fmt: [to_provider(spec, fmt) for spec in tools] for fmt in FORMATS}
    text = json.dumps(converted, indent=2, ensure_ascii=False) + "\n"
    path = GOLDEN / f"{name}.json"
    if os.environ.get("ATRIUM_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path} differs; see the module docstring"


async def test_the_everything_servers_tools_match_their_golden_file() -> None:
    check_golden("everything", await listed_tools(create_everything_server(), "everything"))


@pytest.fixture
def project(tmp_path: Path) -> Settings:
    """A project made by ``atrium init``, as ``tests/servers/conftest.py`` makes it."""
    assert run_atrium("init", str(tmp_path)).exit_code == 0
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_")}
    return load_settings(tmp_path, environ=environ)


async def test_the_atrium_servers_tools_match_their_golden_file(project: Settings) -> None:
    check_golden("atrium", await listed_tools(create_atrium_server(project), "atrium"))
