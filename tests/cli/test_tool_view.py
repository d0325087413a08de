"""How ``atrium plugins mcp tools|call|validate`` show tools, results and capabilities
(``atrium.cli.toolview``)."""

from __future__ import annotations

import base64
import json

import pytest
from mcp.types import (
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)

from atrium.cli.context import CliState
from atrium.cli.toolview import capabilities_text, hints, parameters, print_result, short


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (None, "-"),
        (ToolAnnotations(), "-"),
        (ToolAnnotations(read_only_hint=True, open_world_hint=False), "read-only, closed-world"),
        (ToolAnnotations(destructive_hint=True), "destructive"),
        (
            ToolAnnotations(destructive_hint=False, idempotent_hint=True),
            "non-destructive, idempotent",
        ),
    ],
)
def test_hints_name_what_a_tool_declares(
    annotations: ToolAnnotations | None, expected: str
) -> None:
    assert hints(annotations) == expected


def test_parameters_give_each_property_its_type_and_mark_the_optional_ones() -> None:
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "mode": {"enum": ["a", "b"]},
        },
        "required": ["path"],
    }

    assert parameters(schema) == "path: string, limit?: integer|null, mode?: enum"
    assert parameters({"type": "object"}) == "-"


def test_short_is_the_descriptions_first_sentence_else_the_title() -> None:
    assert short("Title", "Run one command. Then more.\nSecond line") == "Run one command"
    assert short("Title", None) == "Title"
    assert short(None, "x" * 300).endswith("…")


def call_output(result: CallToolResult, capsys: pytest.CaptureFixture[str]) -> str:
    print_result(CliState(), result)
    return capsys.readouterr().out


def test_text_is_printed_as_written_and_structured_content_follows_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = CallToolResult(
        content=[TextContent(type="text", text="# Playbook\nStep one")],
        structured_content={"name": "p", "tags": ["a"]},
    )

    out = call_output(result, capsys)

    text, structured = out.split("\n\n", 1)
    assert text == "# Playbook\nStep one"
    assert json.loads(structured) == {"name": "p", "tags": ["a"]}


def test_a_text_block_echoing_the_structured_content_is_printed_once_indented(
    capsys: pytest.CaptureFixture[str],
) -> None:
    structured = {"playbooks": [{"name": "p"}]}
    result = CallToolResult(
        content=[TextContent(type="text", text=json.dumps(structured))],
        structured_content=structured,
    )

    out = call_output(result, capsys)

    assert out == json.dumps(structured, indent=2) + "\n"


def test_images_links_and_resources_are_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    result = CallToolResult(
        content=[
            ImageContent(
                type="image", data=base64.b64encode(b"x" * 2048).decode(), mime_type="image/png"
            ),
            ResourceLink(
                type="resource_link", uri="file:///a.txt", name="a", mime_type="text/plain"
            ),
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="playbook://p", mime_type="text/markdown", text="hi"
                ),
            ),
        ]
    )

    lines = call_output(result, capsys).splitlines()

    assert lines == [
        "[image image/png, 2.0 KB]",
        "[resource link file:///a.txt (a, text/plain)]",
        "[resource playbook://p (text/markdown, 2 B)]",
        "hi",
    ]


def test_capabilities_list_each_with_the_options_it_turns_on() -> None:
    capabilities = {
        "tools": {"listChanged": True},
        "resources": {"subscribe": True, "listChanged": False},
        "logging": {},
    }

    assert capabilities_text(capabilities) == "tools (listChanged), resources (subscribe), logging"
    assert capabilities_text({}) == "(none)"
