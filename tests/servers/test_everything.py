"""The everything server over HTTP, with the official SDK client, in both protocol eras."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import pytest
from mcp.client.client import Client
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    BlobResourceContents,
    ElicitRequestParams,
    ElicitResult,
    ImageContent,
    PromptReference,
    TextContent,
    TextResourceContents,
)

from atrium_everything import create_server
from tests.processes import free_port
from tests.servers.helpers import running, serving

MODES = ["2026-07-28", "legacy"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def answer_name(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"name": "Ada", "username": "ada"})


@pytest.mark.parametrize("mode", MODES)
async def test_the_scenario_tools_are_listed_with_descriptions(mode: str) -> None:
    async with serving(create_server()) as url, Client(f"{url}/mcp", mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert {"test_simple_text", "test_image_content", "test_tool_with_progress"} <= set(tools)
    assert {"test_input_required_result_elicitation", "test_elicitation"} <= set(tools)
    assert all(tool.description and tool.input_schema for tool in tools.values())


async def test_a_hand_written_2020_12_input_schema_is_listed_as_written() -> None:
    async with serving(create_server()) as url, Client(f"{url}/mcp") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    schema = tools["json_schema_2020_12_tool"].input_schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$defs"]["address"]["$anchor"] == "postalAddress"
    assert schema["additionalProperties"] is False
    assert {"allOf", "if", "then", "else"} <= set(schema)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_answer_with_text_and_with_a_png_image(mode: str) -> None:
    async with serving(create_server()) as url, Client(f"{url}/mcp", mode=mode) as client:
        text = await client.call_tool("test_simple_text", {})
        image = await client.call_tool("test_image_content", {})

    assert isinstance(text.content[0], TextContent)
    assert text.content[0].text == "This is a simple text response for testing."
    [block] = image.content
    assert isinstance(block, ImageContent)
    assert block.mime_type == "image/png"
    assert base64.b64decode(block.data).startswith(PNG_SIGNATURE)


async def test_a_failing_tool_is_a_tool_error_not_a_protocol_error() -> None:
    async with serving(create_server()) as url, Client(f"{url}/mcp") as client:
        result = await client.call_tool("test_error_handling", {})

    assert result.is_error


@pytest.mark.parametrize("mode", MODES)
async def test_resources_read_as_text_binary_and_from_the_template(mode: str) -> None:
    async with serving(create_server()) as url, Client(f"{url}/mcp", mode=mode) as client:
        [text] = (await client.read_resource("test://static-text")).contents
        [binary] = (await client.read_resource("test://static-binary")).contents
        [data] = (await client.read_resource("test://template/42/data")).contents

    assert isinstance(text, TextResourceContents)
    assert text.text == "This is the content of the static text resource."
    assert isinstance(binary, BlobResourceContents)
    assert (binary.mime_type, base64.b64decode(binary.blob)[:8]) == ("image/png", PNG_SIGNATURE)
    assert isinstance(data, TextResourceContents)
    assert json.loads(data.text) == {"id": "42", "templateTest": True, "data": "Data for ID: 42"}


async def test_reading_an_unknown_resource_is_invalid_params_naming_the_uri() -> None:
    async with serving(create_server()) as url, Client(f"{url}/mcp") as client:
        with pytest.raises(MCPError) as raised:
            await client.read_resource("test://no-such-resource")

    assert raised.value.error.code == -32602
    assert raised.value.error.data == {"uri": "test://no-such-resource"}


@pytest.mark.parametrize("mode", MODES)
async def test_a_prompt_renders_its_arguments_and_they_complete(mode: str) -> None:
    async with serving(create_server()) as url, Client(f"{url}/mcp", mode=mode) as client:
        prompt = await client.get_prompt(
            "test_prompt_with_arguments", {"arg1": "hello", "arg2": "world"}
        )
        completion = await client.complete(
            PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
            {"name": "arg1", "value": "pa"},
        )

    [message] = prompt.messages
    assert isinstance(message.content, TextContent)
    assert message.content.text == "Prompt with arguments: arg1='hello', arg2='world'"
    assert completion.completion.values == ["paris", "park", "party"]


async def test_input_required_asks_the_2026_client_and_answers_on_the_retry() -> None:
    server = create_server()
    async with (
        serving(server) as url,
        Client(f"{url}/mcp", mode="2026-07-28", elicitation_callback=answer_name) as client,
    ):
        result = await client.call_tool("test_input_required_result_elicitation", {})

    assert isinstance(result.content[0], TextContent)
    assert result.content[0].text == "Hello, Ada!"


async def test_elicitation_asks_the_legacy_client_in_the_middle_of_the_call() -> None:
    server = create_server()
    async with (
        serving(server) as url,
        Client(f"{url}/mcp", mode="legacy", elicitation_callback=answer_name) as client,
    ):
        result = await client.call_tool("test_elicitation", {"message": "Who are you?"})

    assert isinstance(result.content[0], TextContent)
    assert result.content[0].text.startswith("User response: action=accept")
    assert "'username': 'ada'" in result.content[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_sampling_is_refused_with_missing_capability(mode: str) -> None:
    async with serving(create_server()) as url, Client(f"{url}/mcp", mode=mode) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("test_missing_capability", {})

    assert raised.value.error.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert raised.value.error.data == {"requiredCapabilities": {"sampling": {}}}


async def test_the_console_script_serves_everything_on_the_given_port(tmp_path: Path) -> None:
    binary = shutil.which("atrium-mcp-everything", path=str(Path(sys.executable).parent))
    assert binary is not None
    port = free_port()
    argv = [binary, "--port", str(port), "--project", str(tmp_path), "--unauthenticated"]

    with running(argv, port, tmp_path / "output.log"):
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("test_simple_text", {})
            info = client.server_info

    assert not result.is_error
    assert info is not None
    assert info.name == "everything"
