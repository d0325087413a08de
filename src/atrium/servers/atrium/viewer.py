"""The ``atrium`` server's artifact viewer: an MCP App (SEP-1865, "MCP Apps") and the
artifacts it shows.

Every run of the ``atrium`` tool is stored as an artifact (kind ``cli-run``). Three things make
a run something a host can show again:

* the tool's result links its artifact (``artifact_link``: a ``resource_link`` to
  ``artifact://atrium/<id>``), and the tool's ``_meta.ui.resourceUri`` names the viewer
  (``TOOL_META``), so a host that speaks MCP Apps renders the result with it;
* ``artifact://atrium/{id}`` (``add_artifact_resource``) is the artifact as JSON. An artifact
  is its caller's: only the subject that ran the command (kept in the artifact's content) or
  an ``admin`` may read it. There is no sharing: another user gets the same "not found" as for
  an id that does not exist, so ids tell nobody what others ran;
* ``ui://atrium/artifact-viewer`` (``viewer_extension``) is the viewer itself, an HTML document
  served as ``text/html;profile=mcp-app`` and listed by ``resources/list``. It renders a run's
  output as a table when it is JSON rows, else as text.

Its Content Security Policy. The host renders the document in a sandboxed frame, from its
text: there is no origin the document could load its own script from, so the script is
inline, in one ``<script>`` element. The host builds its CSP from ``_meta.ui.csp`` (spec:
"Host MUST construct CSP headers based on declared domains"); we declare no connect, resource,
frame or base-URI domain, which gets the spec's restrictive default (no network at all). The
document narrows that further with its own CSP ``<meta>``: ``default-src 'none'``, scripts and
styles only by the SHA-256 of our own two elements (a hash source also switches off
``'unsafe-inline'``, so an injected inline script or event handler does not run), Trusted
Types so no string can become markup or script, no forms, no base URI. The script builds every
node with ``textContent``; the HTML has no inline event handler and no ``javascript:`` URL.
The page is assembled here, from ``viewer/``, so the hashes always match what is served.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
from importlib import resources
from typing import Any

from mcp.server.apps import Apps, ResourceCsp
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST, ResourceLink

from atrium.auth.assertion import CallerIdentity
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import current_caller
from atrium.store import ArtifactRecord, Store, StoreError

logger = logging.getLogger(__name__)

VIEWER_URI = "ui://atrium/artifact-viewer"
ARTIFACT_SCHEME = "artifact"
ARTIFACT_MIME_TYPE = "application/json"
# The flat key is the spec's deprecated form, still read by hosts built before 2026-01-26.
TOOL_META: dict[str, Any] = {"ui": {"resourceUri": VIEWER_URI}, "ui/resourceUri": VIEWER_URI}

_ASSETS = "viewer"
_MARKERS = ("@CSP@", "@STYLE@", "@SCRIPT@")
_ARTIFACT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def viewer_extension() -> Apps:
    """The MCP Apps extension of the atrium server: the viewer as a ``ui://`` resource.

    Passed to the server at construction (``MCPServer(extensions=[...])``), which registers the
    resource and advertises ``io.modelcontextprotocol/ui`` in its capabilities.
    """
    apps = Apps()
    apps.add_html_resource(
        VIEWER_URI,
        viewer_html(),
        name="artifact-viewer",
        title="Artifact viewer",
        description=(
            "Shows a run of the atrium tool: its output as a table when it is JSON rows,"
            " else as text, with its exit code and stderr."
        ),
        # Declared, and empty: the viewer reaches no network and loads nothing from anywhere.
        csp=ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[]),
        prefers_border=True,
    )
    return apps


@functools.cache
def viewer_html() -> str:
    """The viewer's HTML document, its CSP naming the hashes of its own script and style."""
    folder = resources.files("atrium.servers.atrium") / _ASSETS
    page, style, script = (
        (folder / name).read_text(encoding="utf-8").replace("\r\n", "\n")
        for name in ("viewer.html", "viewer.css", "viewer.js")
    )
    # An element's text ends at its first closing tag: a "</" inside would cut it short.
    if "</style" in style.lower() or "</script" in script.lower():
        raise ValueError("viewer assets must not contain a closing </style> or </script> tag")
    if any(page.count(marker) != 1 for marker in _MARKERS):
        raise ValueError(f"viewer.html must hold each of {', '.join(_MARKERS)} once")
    policy = content_security_policy(script=script, style=style)
    csp, style_at, script_at = _MARKERS
    return page.replace(csp, policy).replace(style_at, style).replace(script_at, script)


def content_security_policy(*, script: str, style: str) -> str:
    """The document's own CSP: nothing but the one script and the one style element."""
    directives = {
        "default-src": "'none'",
        "script-src": _hash_source(script),
        "style-src": _hash_source(style),
        "img-src": "'none'",
        "font-src": "'none'",
        "connect-src": "'none'",
        "media-src": "'none'",
        "frame-src": "'none'",
        "worker-src": "'none'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "require-trusted-types-for": "'script'",
        "trusted-types": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def _hash_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def artifact_uri(server: str, artifact_id: str) -> str:
    return f"{ARTIFACT_SCHEME}://{server}/{artifact_id}"


def artifact_link(server: str, artifact_id: str, command: str) -> ResourceLink:
    """The ``resource_link`` a tool result carries to its stored artifact."""
    return ResourceLink(
        type="resource_link",
        uri=artifact_uri(server, artifact_id),
        name=f"artifact-{artifact_id}",
        title=f"atrium {command}",
        description="This run, stored: readable again by its caller (and admins).",
        mime_type=ARTIFACT_MIME_TYPE,
    )


def add_artifact_resource(server: AtriumServer[Store]) -> None:
    """``artifact://<server>/{id}``: one stored artifact of this server, as JSON, for its owner."""
    name = server.name

    @server.resource(
        artifact_uri(name, "{id}"),
        name="artifact",
        title="Artifact",
        description=(
            f"A stored run of the {name} tool (command, exit code, stdout, stderr), as JSON."
            " Only the user who ran it, or an admin, may read it."
        ),
        mime_type=ARTIFACT_MIME_TYPE,
    )
    async def artifact(id: str, ctx: Context[Store, Any]) -> str:
        caller = _caller(ctx, name)
        if caller.anonymous:
            raise MCPError(
                INVALID_REQUEST,
                f"{artifact_uri(name, id)}: sign in to read artifacts;"
                " each belongs to the user who ran its command",
            )
        if not _ARTIFACT_ID.fullmatch(id):
            raise ResourceNotFoundError(
                f"{artifact_uri(name, id)}: '{id}' is not an artifact id (a lowercase UUID,"
                " as in the artifact_id of a tool result)"
            )
        record = await _get(ctx.request_context.lifespan_context, name, id)
        if record is None or not readable(record, caller, name):
            logger.info("artifact %s: not found or not readable by %s", id, caller.subject)
            raise ResourceNotFoundError(
                f"{artifact_uri(name, id)}: no such artifact of yours"
                " (only the user who ran the command, or an admin, may read it)"
            )
        return json.dumps(_document(record), ensure_ascii=False)


def _caller(ctx: Context[Store, Any], server: str) -> CallerIdentity:
    """The verified caller; a server run without the gateway has none: anonymous."""
    try:
        return current_caller(ctx)
    except LookupError:
        return CallerIdentity(server, None, None, frozenset(), "external", "-")


async def _get(store: Store, server: str, artifact_id: str) -> ArtifactRecord | None:
    try:
        return await store.artifacts.get(artifact_id)
    except StoreError:
        logger.exception("could not read artifact %s", artifact_id)
        raise ResourceError(
            f"{artifact_uri(server, artifact_id)}: the store could not be read; try again"
        ) from None


def readable(record: ArtifactRecord, caller: CallerIdentity, server: str) -> bool:
    """Whether ``caller`` may read ``record``: its owner or an admin, for this server's own."""
    if record.server != server:
        return False
    if caller.admin:
        return True
    owner = record.content.get("caller")
    return (
        isinstance(owner, dict)
        and caller.subject is not None
        and owner.get("subject") == caller.subject
    )


def _document(record: ArtifactRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "uri": artifact_uri(record.server, record.id),
        "server": record.server,
        "tool": record.tool,
        "kind": record.kind,
        "title": record.title,
        "created_at": record.created_at.isoformat(),
        "content": record.content,
    }
