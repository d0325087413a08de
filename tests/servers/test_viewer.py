"""The ``atrium`` server's artifact viewer (MCP Apps) and its artifacts, in-process over real
HTTP with the official SDK client: callers vouched for as the gateway would (two users and an
admin), a real SQLite store. The same through the gateway with OAuth is end to end
(``tests/e2e/test_build_flow.py``)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import pytest
from mcp import Client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, ResourceLink, TextResourceContents

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier
from atrium.servers.atrium.server import create_server
from atrium.servers.atrium.viewer import VIEWER_URI, viewer_html
from atrium.settings import Settings, load_settings
from atrium.store import Store
from tests.servers.helpers import serving
from tests.trust import vouched_client

USER = frozenset({"user", "tools:read", "tools:write"})
ADMIN = frozenset({"admin", "user", "tools:read", "tools:write"})
COMMAND = "plugins mcp list --json"


@pytest.fixture
def settings(project: Settings) -> Settings:
    """The project's settings allowing any port: its servers were given free ones
    (``tests.processes.free_server_ports``), which the CLI the atrium tool runs must accept."""
    return load_settings(
        project.project_dir, {**project.environ, "ATRIUM_PORT_RANGE": "1024-65535"}
    )


@asynccontextmanager
async def clients(
    settings: Settings, **callers: frozenset[str]
) -> AsyncIterator[dict[str, Client]]:
    """One atrium server, and a client per subject (``ada=USER``) with those scopes."""
    verifier = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, "atrium")
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serving(create_server(settings), verifier))
        connected = {
            subject: await stack.enter_async_context(
                vouched_client(
                    f"{url}/mcp", settings.state_dir, "atrium", subject=subject, scopes=scopes
                )
            )
            for subject, scopes in callers.items()
        }
        yield connected


async def run(client: Client) -> tuple[dict[str, Any], str]:
    """Run ``COMMAND``; its structured content and the link to its artifact."""
    result = await client.call_tool("atrium", {"command": COMMAND})
    assert not result.is_error, result.content
    [link] = [block for block in result.content if isinstance(block, ResourceLink)]
    return result.structured_content or {}, str(link.uri)


async def read_json(client: Client, uri: str) -> dict[str, Any]:
    [contents] = (await client.read_resource(uri)).contents
    assert isinstance(contents, TextResourceContents)
    assert contents.mime_type == "application/json"
    document: dict[str, Any] = json.loads(contents.text)
    return document


async def test_the_viewer_is_listed_as_an_mcp_app_with_a_csp_that_declares_no_domain(
    settings: Settings,
) -> None:
    async with serving(create_server(settings)) as url, Client(f"{url}/mcp") as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        [contents] = (await client.read_resource(VIEWER_URI)).contents
        capabilities = client.server_capabilities

    viewer = listed[VIEWER_URI]
    assert viewer.mime_type == APP_MIME_TYPE
    assert isinstance(contents, TextResourceContents)
    assert (contents.mime_type, contents.text) == (APP_MIME_TYPE, viewer_html())
    for meta in (viewer.meta, contents.meta):
        csp = (meta or {})["ui"]["csp"]
        assert csp == {"connectDomains": [], "resourceDomains": [], "frameDomains": []}
    assert capabilities.extensions is not None
    assert EXTENSION_ID in capabilities.extensions


async def test_the_atrium_tool_names_the_viewer_and_the_artifact_template_is_listed(
    settings: Settings,
) -> None:
    async with serving(create_server(settings)) as url, Client(f"{url}/mcp") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        templates = (await client.list_resource_templates()).resource_templates

    assert (tools["atrium"].meta or {})["ui"] == {"resourceUri": VIEWER_URI}
    assert "artifact://atrium/{id}" in [template.uri_template for template in templates]


class _Document(HTMLParser):
    """Every start tag with its attributes, and the text of each script and style element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.texts:
            self._open = tag
            self.texts[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.texts[self._open][-1] += data


def _policy(document: _Document) -> dict[str, list[str]]:
    [content] = [
        attrs["content"]
        for tag, attrs in document.tags
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "content-security-policy"
    ]
    assert content is not None
    directives = [part.split() for part in content.split(";") if part.strip()]
    return {name: values for name, *values in directives}


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_viewer_runs_only_its_own_inline_script_and_style_under_its_csp() -> None:
    document = _Document()
    document.feed(viewer_html())
    policy = _policy(document)

    [script], [style] = document.texts["script"], document.texts["style"]
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == [_hash(script)]
    assert policy["style-src"] == [_hash(style)]
    for directive in ("connect-src", "img-src", "frame-src", "object-src", "base-uri"):
        assert policy[directive] == ["'none'"], directive
    assert policy["require-trusted-types-for"] == ["'script'"]
    sources = [value for values in policy.values() for value in values]
    assert not [source for source in sources if "http" in source or "*" in source]
    assert [attrs for tag, attrs in document.tags if tag == "script"] == [{}]  # no src


def test_the_viewer_has_no_inline_event_handler_javascript_url_or_markup_from_strings() -> None:
    document = _Document()
    document.feed(viewer_html())
    [script] = document.texts["script"]

    attributes = [name for _, attrs in document.tags for name in attrs]
    assert not [name for name in attributes if name.startswith("on") or name == "style"]
    assert "javascript:" not in viewer_html().lower()
    sinks = r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc"
    assert re.findall(sinks, script) == []


async def test_a_run_links_its_artifact_which_its_caller_reads_as_json(settings: Settings) -> None:
    async with clients(settings, ada=USER) as connected:
        structured, uri = await run(connected["ada"])
        artifact = await read_json(connected["ada"], uri)

    assert uri == f"artifact://atrium/{structured['artifact_id']}"
    assert (artifact["id"], artifact["kind"], artifact["uri"]) == (
        structured["artifact_id"],
        "cli-run",
        uri,
    )
    assert artifact["content"]["stdout"] == structured["stdout"]
    assert artifact["content"]["caller"]["subject"] == "ada"


async def test_another_user_is_refused_an_artifact_as_if_it_did_not_exist(
    settings: Settings,
) -> None:
    async with clients(settings, ada=USER, bob=USER) as connected:
        _, uri = await run(connected["ada"])
        with pytest.raises(MCPError) as refused:
            await connected["bob"].read_resource(uri)
        with pytest.raises(MCPError) as unknown:
            await connected["bob"].read_resource(
                "artifact://atrium/00000000-0000-4000-8000-000000000000"
            )

    assert refused.value.code == unknown.value.code == INVALID_PARAMS


async def test_an_admin_reads_every_users_artifact(settings: Settings) -> None:
    async with clients(settings, bob=USER, root=ADMIN) as connected:
        structured, uri = await run(connected["bob"])
        artifact = await read_json(connected["root"], uri)

    assert artifact["content"]["stdout"] == structured["stdout"]
    assert artifact["content"]["caller"]["subject"] == "bob"


async def test_an_artifact_of_another_server_is_not_served_even_to_an_admin(
    settings: Settings,
) -> None:
    async with await Store.open(settings) as store:
        other = await store.artifacts.add(
            server="content-manager", tool="t", kind="image", title="x", content={}
        )
    async with clients(settings, root=ADMIN) as connected:
        with pytest.raises(MCPError) as refused:
            await connected["root"].read_resource(f"artifact://atrium/{other.id}")

    assert refused.value.code == INVALID_PARAMS


async def test_a_malformed_artifact_id_is_a_clear_error(settings: Settings) -> None:
    async with clients(settings, ada=USER) as connected:
        with pytest.raises(MCPError) as refused:
            await connected["ada"].read_resource("artifact://atrium/not-an-id")

    assert refused.value.code == INVALID_PARAMS
    assert "not-an-id" in refused.value.message


async def test_an_anonymous_caller_is_asked_to_sign_in(settings: Settings) -> None:
    async with clients(settings, ada=USER) as connected:
        _, uri = await run(connected["ada"])
    # Served without the gateway (``--unauthenticated``): nobody is vouched for.
    async with serving(create_server(settings)) as url, Client(f"{url}/mcp") as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)

    assert refused.value.code == INVALID_REQUEST
