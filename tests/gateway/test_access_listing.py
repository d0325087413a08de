"""A ``tools/list`` answer narrowed for one caller, and the catalog learnt from it
(``atrium.gateway.access``), as the gateway does once per listing.

``filter_result`` asks one ``ToolAccess`` for a verdict on every tool of the listing, and that
access works out what the caller's scopes reach once for the whole list (issue 17: a caller's
filtered ``tools/list`` of a 100-tool server in ≤ 1 ms). These tests check that it keeps
exactly what a fresh access would for each tool alone, on servers whose rules take every
branch of the verdict.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from atrium.auth.resource_guard import ANONYMOUS, Caller
from atrium.gateway.access import ToolAccess, ToolCatalog
from atrium.gateway.policy import Policy
from atrium.registry.schema import parse_server_config

SERVERS: dict[str, dict[str, Any]] = {
    "no-sign-in": {"oauth": {"required": False}},
    "dev": {"oauth": {"dev_mode": True}},
    "denied": {"oauth": {"required": False}, "tools": {"denied": ["admin_*"]}},
    "allowed": {"oauth": {"required": True}, "tools": {"allowed": ["peek", "echo"]}},
    "guarded": {
        "oauth": {"required": False},
        "tools": {
            "public": ["echo", "peek"],
            "scopes": {"peek": ["auditor"], "admin_*": ["admin"]},
        },
    },
    "reports": {"oauth": {"required": True, "scopes": ["reports"]}},
    "sign-in": {"oauth": {"required": True}},
}

CALLERS: list[tuple[str, ...] | None] = [
    None,
    ("anonymous",),
    ("user", "tools:read"),
    ("user", "tools:read", "tools:write"),
    ("admin",),
    ("reports",),
    ("auditor", "tools:read"),
]

TOOLS: list[dict[str, Any]] = [
    {"name": "peek", "annotations": {"readOnlyHint": True}},
    {"name": "echo"},
    {"name": "admin_reset", "annotations": {"readOnlyHint": False}},
    {"name": "admin_peek", "annotations": {"readOnlyHint": True}},
    {"name": "upload"},
]


def access_for(server: str, scopes: tuple[str, ...] | None) -> ToolAccess:
    config = parse_server_config({"binary": "b", "port": 5000, **SERVERS[server]})
    caller = ANONYMOUS if scopes is None else Caller("s", "c", frozenset(scopes))
    return ToolAccess(server, config, Policy.of(config.tools), caller, ToolCatalog())


def listed(server: str, scopes: tuple[str, ...] | None) -> list[str]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "result": {"tools": copy.deepcopy(TOOLS)}}
    access_for(server, scopes).filter_result(message)
    return [tool["name"] for tool in message["result"]["tools"]]


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_filtered_listing_keeps_exactly_the_tools_a_fresh_verdict_lets_through(
    server: str,
) -> None:
    for scopes in CALLERS:
        alone = [
            tool["name"]
            for tool in TOOLS
            if access_for(server, scopes).verdict(
                tool["name"], tool.get("annotations", {}).get("readOnlyHint") is True
            )
            == "ok"
        ]

        assert listed(server, scopes) == alone, (server, scopes)


def test_a_listing_is_narrowed_to_what_each_caller_may_call() -> None:
    assert listed("no-sign-in", None) == ["peek", "admin_peek"]
    assert listed("denied", ("admin",)) == ["peek", "echo", "upload"]
    assert listed("allowed", ("user", "tools:read", "tools:write")) == ["peek", "echo"]
    assert listed("guarded", None) == ["echo"]
    assert listed("guarded", ("auditor", "tools:read")) == ["peek", "echo"]
    assert listed("reports", ("user", "tools:read")) == ["peek", "admin_peek"]
    assert listed("reports", ("reports",)) == [tool["name"] for tool in TOOLS]


# Entries a backend may list, well formed or not: a verdict per hint must not carry over
# from one entry to another whose hint differs, whatever the order.
ODD_TOOLS: list[Any] = [
    {"name": "plain"},
    {"name": "peek", "annotations": {"readOnlyHint": True}},
    {"name": "admin_peek", "annotations": {"readOnlyHint": True}},
    {"name": "hint_false", "annotations": {"readOnlyHint": False}},
    {"name": "hint_text", "annotations": {"readOnlyHint": "true"}},
    {"name": "hint_one", "annotations": {"readOnlyHint": 1}},
    {"name": "hints_a_list", "annotations": [{"readOnlyHint": True}]},
    {"name": "hint_nested", "annotations": {"hints": {"readOnlyHint": True}}},
    {"name": 7, "annotations": {"readOnlyHint": True}},
    {"annotations": {"readOnlyHint": True}},
    "peek",
    None,
    {"name": "peek", "annotations": {"readOnlyHint": False}},
    {"name": "echo", "annotations": {"readOnlyHint": True}},
    {"name": "admin_reset"},
    *({"name": f"tool_{n}", "annotations": {"readOnlyHint": n % 3 == 0}} for n in range(12)),
]


def hinted(tool: dict[str, Any]) -> bool:
    annotations = tool.get("annotations")
    return isinstance(annotations, dict) and annotations.get("readOnlyHint") is True


@pytest.mark.parametrize("server", list(SERVERS))
def test_an_irregular_listing_keeps_exactly_the_entries_a_fresh_verdict_lets_through(
    server: str,
) -> None:
    for scopes in CALLERS:
        alone = [
            tool
            for tool in ODD_TOOLS
            if isinstance(tool, dict)
            and access_for(server, scopes).verdict(str(tool.get("name")), hinted(tool)) == "ok"
        ]
        message: dict[str, Any] = {"id": 1, "result": {"tools": copy.deepcopy(ODD_TOOLS)}}

        narrowed = access_for(server, scopes).filter_result(message)

        assert message["result"]["tools"] == (alone if narrowed else ODD_TOOLS), (server, scopes)
        assert narrowed == (alone != ODD_TOOLS), (server, scopes)


def test_the_catalog_learns_each_named_entry_of_an_irregular_listing() -> None:
    catalog = ToolCatalog()

    catalog.learn("s", copy.deepcopy(ODD_TOOLS))

    named = [tool for tool in ODD_TOOLS if isinstance(tool, dict) and "name" in tool]
    for tool in named:
        assert catalog.knows("s", tool["name"]) is isinstance(tool["name"], str), tool
    # The last entry of a name decides, as it always did: "peek" is listed twice.
    assert not catalog.read_only("s", "peek")
    assert catalog.read_only("s", "admin_peek")
    assert catalog.read_only("s", "echo")
    assert not any(catalog.read_only("s", name) for name in ("hint_text", "hint_one", "plain"))
    assert not any(catalog.read_only("s", name) for name in ("hints_a_list", "hint_nested"))
    assert [catalog.read_only("s", f"tool_{n}") for n in range(4)] == [True, False, False, True]


def marked(name: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
    }
    return {"name": name, "inputSchema": schema}


def plain(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
    }


def test_the_catalog_keeps_the_header_declarations_of_the_marked_tools_only() -> None:
    catalog = ToolCatalog()

    catalog.learn("s", [plain(f"tool_{index}") for index in range(50)] + [marked("where")])

    assert list(catalog.header_schemas("s")) == ["where"]
    assert catalog.header_schemas("s")["where"]["properties"]["region"]["x-mcp-header"] == "Region"
    assert catalog.knows("s", "tool_49")
    assert catalog.knows("s", "where")


def test_a_listing_without_marks_forgets_the_declarations_of_its_tools() -> None:
    catalog = ToolCatalog()
    catalog.learn("s", [marked("where"), marked("kept")])

    catalog.learn("s", [plain("where")])

    assert list(catalog.header_schemas("s")) == ["kept"]


def test_a_listing_with_marks_learns_the_read_only_hints_too() -> None:
    catalog = ToolCatalog()
    tools = [marked("where"), plain("peek"), plain("echo")]
    tools[0]["annotations"] = {"readOnlyHint": True}
    tools[1]["annotations"] = {"readOnlyHint": True}

    catalog.learn("s", tools)

    assert catalog.read_only("s", "where")
    assert catalog.read_only("s", "peek")
    assert catalog.knows("s", "echo")
    assert not catalog.read_only("s", "echo")
