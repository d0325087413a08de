"""Namespaced tool names: seed 004's forms, model-safe characters and length, no silent clash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atrium.client.naming import (
    VALID,
    AllowedTools,
    NameClash,
    ToolOrigin,
    model_safe,
    name_table,
    namespaced,
)


@pytest.mark.parametrize(
    ("server", "tool", "plugin", "expected"),
    [
        ("myserver", "create_item", None, "mcp__myserver__create_item"),
        ("asana", "asana_create_task", "asana", "mcp__plugin_asana_asana__asana_create_task"),
        ("database", "query", "myplug", "mcp__plugin_myplug_database__query"),
        ("gh", "create_issue", "github", "mcp__plugin_github_gh__create_issue"),
        ("files.v2", "read file", None, "mcp__files_v2__read_file"),
    ],
)
def test_the_seed_forms(server: str, tool: str, plugin: str | None, expected: str) -> None:
    assert namespaced(server, tool, plugin) == expected


def test_a_long_name_keeps_a_prefix_and_a_stable_distinct_hash() -> None:
    one = namespaced("a-server-with-a-rather-long-name", "tool_" + "x" * 60)
    two = namespaced("a-server-with-a-rather-long-name", "tool_" + "x" * 59 + "y")

    assert len(one) == len(two) == 64
    assert one.startswith("mcp__a-server-with-a-rather-long-name__tool_")
    assert one != two
    assert one == namespaced("a-server-with-a-rather-long-name", "tool_" + "x" * 60)


@given(st.text(min_size=0, max_size=200))
def test_every_name_is_model_safe(name: str) -> None:
    assert VALID.match(model_safe(name))


def test_two_tools_with_one_name_are_an_error_naming_both() -> None:
    origins = [ToolOrigin("files", "read.file"), ToolOrigin("files", "read_file")]

    with pytest.raises(NameClash) as caught:
        name_table(origins)

    assert "tool 'read.file' of server 'files'" in str(caught.value)
    assert "tool 'read_file' of server 'files'" in str(caught.value)
    assert "mcp__files__read_file" in str(caught.value)


def test_the_table_leads_back_to_the_tool() -> None:
    table = name_table([ToolOrigin("time", "get_current_time"), ToolOrigin("db", "q", "plug")])

    assert table["mcp__time__get_current_time"] == ToolOrigin("time", "get_current_time")
    assert table["mcp__plugin_plug_db__q"].plugin == "plug"


def test_allowed_tools_takes_exact_names_and_globs() -> None:
    allowed = AllowedTools.of(["mcp__plugin_asana_asana__asana_create_task", "mcp__github__*"])

    assert allowed.allows("mcp__plugin_asana_asana__asana_create_task")
    assert not allowed.allows("mcp__plugin_asana_asana__asana_delete_task")
    assert allowed.allows("mcp__github__get_issue")
    assert not allowed.allows("mcp__githubx__get_issue")
    assert AllowedTools.of(None).allows("anything")
    assert not AllowedTools.of([]).allows("anything")
