"""MCP tools in the tool format of each model API, and the two resource meta-tools.

``to_provider(tool, fmt)`` gives one tool (its name already namespaced) as:

* ``openai``: Chat Completions, ``{"type": "function", "function": {name, description,
  parameters, strict}}``;
* ``openai-responses``: Responses, ``{"type": "function", name, description, parameters,
  strict}``;
* ``anthropic``: Messages, ``{name, description, input_schema}``;
* ``gemini``: a google-genai ``FunctionDeclaration``, ``{name, description, parameters}``
  (without ``parameters`` when the tool takes none: Gemini refuses an object without
  properties).

The input schema is checked against its JSON Schema meta-schema, its ``$ref`` inlined
(``schema_refs``), cleaned (``schema_core``) and cut to the provider's subset
(``schema_openai``, ``schema_gemini``; Anthropic takes JSON Schema 2020-12 as it is, but for
the root, which must be a plain object). Every step keeps the schema sound: what the tool
accepted, the converted schema accepts. ``strict`` is true only when the conversion was exact
and the result fits OpenAI's strict mode (``strict``).

A schema that cannot be converted raises ``SchemaError`` naming the tool and the JSON
pointer; ``to_provider_all`` logs it and skips the tool, as seed 004 does ("log but don't
fail registration").
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from atrium.client.schema_core import normalize
from atrium.client.schema_gemini import gemini_schema
from atrium.client.schema_openai import openai_schema
from atrium.client.schema_refs import inline_refs
from atrium.client.schema_tree import Relaxations, Schema, SchemaError, child
from atrium.client.strict import fits_strict

logger = logging.getLogger(__name__)

Format = Literal["openai", "openai-responses", "anthropic", "gemini"]
FORMATS: tuple[Format, ...] = get_args(Format)

__all__ = [
    "FORMATS",
    "Format",
    "SchemaError",
    "ToolSpec",
    "resource_tools",
    "to_provider",
    "to_provider_all",
]


@dataclass(frozen=True)
class ToolSpec:
    """One tool as a model sees it: namespaced name, description, JSON Schema of its input."""

    name: str
    description: str
    input_schema: Mapping[str, Any] = field(default_factory=dict)


def to_provider(tool: ToolSpec, fmt: Format) -> dict[str, Any]:
    """``tool`` in the format ``fmt``; ``SchemaError`` when its schema cannot be converted."""
    relax = Relaxations(tool.name)
    core = _core(tool, relax)
    if fmt == "anthropic":
        return {"name": tool.name, "description": tool.description, "input_schema": core}
    if fmt == "gemini":
        return _gemini(tool, gemini_schema(core, relax))
    parameters = openai_schema(core, relax)
    strict = not relax.found and fits_strict(parameters)
    if relax.found:
        logger.debug("tool %s relaxed for OpenAI: %s", tool.name, "; ".join(relax.found))
    function = {"name": tool.name, "description": tool.description, "parameters": parameters}
    if fmt == "openai":
        return {"type": "function", "function": {**function, "strict": strict}}
    return {"type": "function", **function, "strict": strict}


def to_provider_all(tools: Iterable[ToolSpec], fmt: Format) -> list[dict[str, Any]]:
    """Every tool that converts; each one that does not is logged with its reason and skipped."""
    converted = []
    for tool in tools:
        try:
            converted.append(to_provider(tool, fmt))
        except SchemaError as exc:
            logger.warning("skipping %s", exc)
    return converted


def _core(tool: ToolSpec, relax: Relaxations) -> Schema:
    # jsonschema (and referencing) cost ~150 ms to import: only when a tool is converted.
    from jsonschema.exceptions import SchemaError as MetaSchemaError
    from jsonschema.validators import Draft202012Validator, validator_for

    if not isinstance(tool.input_schema, Mapping):
        raise SchemaError(tool.name, "", "not a JSON object")
    schema = copy.deepcopy(dict(tool.input_schema))
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except MetaSchemaError as exc:
        raise SchemaError(tool.name, child("", *exc.absolute_path), exc.message) from None
    try:
        return normalize(inline_refs(schema, relax), relax)
    except RecursionError:
        raise SchemaError(tool.name, "", "nested too deeply") from None


def _gemini(tool: ToolSpec, parameters: Schema) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name, "description": tool.description}
    if parameters.get("properties"):
        declaration["parameters"] = parameters
    return declaration


def resource_tools() -> list[ToolSpec]:
    """``list_mcp_resources`` and ``read_mcp_resource``, as seed 004 defines them."""
    return [
        ToolSpec(
            "list_mcp_resources",
            "Lists resources provided by MCP servers.",
            {
                "type": "object",
                "properties": {
                    "cursor": {"type": "string", "description": "Pagination cursor"},
                    "server": {
                        "type": "string",
                        "description": "Optional MCP server name filter",
                    },
                },
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            "read_mcp_resource",
            "Read a specific resource from an MCP server.",
            {
                "type": "object",
                "properties": {
                    "server": {"type": "string", "description": "MCP server name"},
                    "uri": {"type": "string", "description": "Resource URI to read"},
                },
                "required": ["server", "uri"],
                "additionalProperties": False,
            },
        ),
    ]
