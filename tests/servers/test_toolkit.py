"""``AtriumServer`` and the public API a server author imports from ``atrium``."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from mcp.client.client import Client
from mcp.types import TextContent
from pydantic import BaseModel

import atrium
from atrium import AtriumServer, Context, Icon, ToolAnnotations, ToolError

ICON = Icon(src="data:image/svg+xml;base64,PHN2Zy8+", mime_type="image/svg+xml")


class Forecast(BaseModel):
    city: str
    celsius: float


def weather_server() -> AtriumServer[Any]:
    server: AtriumServer[Any] = AtriumServer(
        "weather", version="1.0.0", instructions="Ask about the weather."
    )

    @server.tool(
        title="Forecast",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True),
        icons=[ICON],
    )
    async def forecast(city: str, ctx: Context) -> Forecast:
        if city == "Atlantis":
            raise ToolError("no forecast below sea level")
        return Forecast(city=city, celsius=21.5)

    @server.resource("weather://{city}", mime_type="text/plain")
    def report(city: str) -> str:
        return f"Sunny in {city}"

    return server


@pytest.mark.parametrize("name", ["Weather", "weather tools", "-weather", "w" * 65, ""])
def test_a_server_name_must_be_a_registry_name(name: str) -> None:
    with pytest.raises(ValueError, match="server name"):
        AtriumServer(name, version="1.0.0")


def test_a_server_needs_a_version() -> None:
    with pytest.raises(ValueError, match="version"):
        AtriumServer("weather", version="")


async def test_a_tool_is_listed_with_its_annotations_icons_and_output_schema() -> None:
    async with Client(weather_server()) as client:
        [tool] = (await client.list_tools()).tools

    assert tool.title == "Forecast"
    assert tool.annotations == ToolAnnotations(read_only_hint=True, open_world_hint=True)
    assert tool.icons == [ICON]
    assert tool.output_schema is not None
    assert set(tool.output_schema["properties"]) == {"city", "celsius"}
    assert set(tool.input_schema["properties"]) == {"city"}


async def test_a_tool_returns_structured_content_or_a_tool_error() -> None:
    async with Client(weather_server()) as client:
        sunny = await client.call_tool("forecast", {"city": "Lyon"})
        failed = await client.call_tool("forecast", {"city": "Atlantis"})

    assert sunny.structured_content == {"city": "Lyon", "celsius": 21.5}
    assert failed.is_error
    message = failed.content[0]
    assert isinstance(message, TextContent)
    assert "below sea level" in message.text


async def test_a_resource_template_is_read_with_its_mime_type() -> None:
    async with Client(weather_server()) as client:
        read = await client.read_resource("weather://lyon")

    [content] = read.contents
    assert (content.mime_type, getattr(content, "text", None)) == ("text/plain", "Sunny in lyon")


def test_the_public_api_is_small_sorted_and_importable() -> None:
    assert atrium.__all__ == sorted(atrium.__all__)
    assert all(getattr(atrium, name) is not None for name in atrium.__all__)


def test_importing_atrium_does_not_load_the_mcp_sdk() -> None:
    # The `atrium` command imports the package on every run.
    code = "import sys, atrium; print(sorted(m for m in sys.modules if m.split('.')[0] in"
    code += " {'mcp', 'uvicorn', 'starlette'}))"

    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert output.stdout.strip() == "[]", output.stderr
