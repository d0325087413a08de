"""An OpenAPI 3.1 description of one hosted server's tools, for clients that speak REST, not
MCP (a ChatGPT Action, a plain HTTP client).

One ``POST /api/v1/mcp/{server}/tools/{tool}`` per tool the caller may call: the request body
is the tool's ``inputSchema`` (JSON Schema 2020-12, which OpenAPI 3.1 uses as is), the 200
answer its ``outputSchema`` (the structured result) or else the MCP content list. An OAuth 2
security scheme names Atrium's authorize and token endpoints, so an Action can sign in.
"""

from __future__ import annotations

import re
from typing import Any

from atrium.gateway.directory import ServerRoute
from atrium.settings import Settings

CONTENT_RESULT = {
    "type": "object",
    "description": "The tool's MCP content blocks (text, images, resources, ...).",
    "properties": {"content": {"type": "array", "items": {"type": "object"}}},
    "required": ["content"],
}
PROBLEM = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "details": {},
    },
    "required": ["error", "message"],
}
_OPERATION = re.compile(r"[^A-Za-z0-9_]")


def tool_path(server: str, tool: str) -> str:
    return f"/api/v1/mcp/{server}/tools/{tool}"


def document(
    settings: Settings, route: ServerRoute, tools: list[dict[str, Any]], scopes: list[str]
) -> dict[str, Any]:
    secured = route.config.oauth.required
    paths = {tool_path(route.name, tool["name"]): _path_item(tool, secured) for tool in tools}
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": f"{route.name} tools",
            "version": "1.0.0",
            "description": route.config.description
            or f"The tools of the MCP server '{route.name}', hosted by Atrium.",
        },
        "servers": [{"url": settings.public_url}],
        "paths": paths,
        "components": {"schemas": {"Problem": PROBLEM, "ContentResult": CONTENT_RESULT}},
    }
    if secured:
        spec["components"]["securitySchemes"] = {"oauth2": _oauth_scheme(settings, scopes)}
        spec["security"] = [{"oauth2": scopes}]
    return spec


def _oauth_scheme(settings: Settings, scopes: list[str]) -> dict[str, Any]:
    base = settings.oauth_base
    return {
        "type": "oauth2",
        "description": "Atrium's OAuth 2.1 authorization server (PKCE S256).",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": f"{base}/authorize",
                "tokenUrl": f"{base}/token",
                "refreshUrl": f"{base}/token",
                "scopes": {scope: f"the {scope} scope" for scope in scopes},
            }
        },
    }


def _path_item(tool: dict[str, Any], secured: bool) -> dict[str, Any]:
    name = str(tool["name"])
    input_schema = tool.get("inputSchema") or {"type": "object"}
    output = tool.get("outputSchema")
    responses: dict[str, Any] = {
        "200": {
            "description": "The tool's result.",
            "content": {
                "application/json": {
                    "schema": output or {"$ref": "#/components/schemas/ContentResult"}
                }
            },
        },
        "400": _problem("The tool ran and reported an error."),
        "404": _problem("No such tool here (or not one this caller may call)."),
        "422": _problem("The arguments do not match the tool's input schema."),
        "429": _problem("Over the rate limit; retry after the Retry-After header's seconds."),
    }
    if secured:
        responses["401"] = _problem("No valid access token.")
        responses["403"] = _problem("The token lacks a scope this tool needs.")
    operation: dict[str, Any] = {
        "operationId": _OPERATION.sub("_", name),
        "summary": str(tool.get("title") or name),
        "description": str(tool.get("description") or ""),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": input_schema}},
        },
        "responses": responses,
    }
    return {"post": operation}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
