"""The built-in ``atrium`` server: the CLI executor and the project's playbooks.

Tools:

* ``atrium`` runs one allowed atrium CLI command on this project (``commands``) as its caller
  (the gateway's caller assertion; ``atrium.auth.operator``) and answers
  with its output as text plus ``structuredContent`` (``CliRunResult``). Every run is stored
  as an artifact (kind ``cli-run``), failed runs too: a non-zero exit is a tool error
  (``isError``), still with its structured content. A refused command is a tool error and
  is not stored: nothing ran.
* ``list_playbooks`` and ``show_playbook`` read ``services/playbooks/*.md`` (``playbooks``);
  each playbook is also the resource ``playbook://<name>`` (``text/markdown``).
* ``list_agents`` and ``run_agent`` run the project's agents for the caller (``agents``).
* The artifact viewer (``viewer``, MCP Apps): ``atrium``'s result links its artifact
  ``artifact://atrium/<id>`` (readable by its caller and admins), and the tool's ``_meta``
  names ``ui://atrium/artifact-viewer``, which renders it.

The store is opened once, in the server's lifespan, and reached by the tools as
``ctx.request_context.lifespan_context``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from atrium.__about__ import __version__
from atrium.auth.assertion import CallerIdentity
from atrium.auth.operator import acting_environment
from atrium.errors import NotFoundError
from atrium.servers.atrium.agents import add_agent_tools
from atrium.servers.atrium.commands import (
    TIMEOUT_S,
    AllowList,
    CliRun,
    CommandRefused,
    parse_command,
    run_cli,
)
from atrium.servers.atrium.playbooks import (
    PLAYBOOK_NAME,
    Playbook,
    PlaybookError,
    load_playbook,
    load_playbooks,
)
from atrium.servers.atrium.viewer import (
    TOOL_META,
    add_artifact_resource,
    artifact_link,
    viewer_extension,
)
from atrium.servers.builtin import store_lifespan
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import current_caller
from atrium.settings import Settings
from atrium.store import ArtifactRecord, Store, StoreError

logger = logging.getLogger(__name__)

NAME = "atrium"
ARTIFACT_KIND = "cli-run"

INSTRUCTIONS = """\
Atrium hosts MCP servers for this project. Use `atrium` to run read-only atrium CLI commands \
(for example `plugins mcp list --json`) and `list_playbooks` / `show_playbook` for step-by-step \
guides to common tasks; read a playbook before acting on a task it covers."""

PlaybookName = Annotated[
    str, Field(pattern=PLAYBOOK_NAME.pattern, description="A name from list_playbooks.")
]


class CliRunResult(BaseModel):
    """The structured content of an ``atrium`` call, and the content of its artifact."""

    command: str = Field(description="The command as given.")
    exit_code: int | None = Field(description="Exit code; null if stopped after the time limit.")
    stdout: str
    stderr: str
    artifact_id: str = Field(description="Id of the stored artifact of this run.")
    duration_ms: int


class PlaybookSummary(BaseModel):
    name: str
    title: str
    description: str
    tags: list[str]


class PlaybookListing(BaseModel):
    playbooks: list[PlaybookSummary]
    problems: list[str] = Field(description="Playbook files that could not be read, and why.")


class PlaybookDocument(PlaybookSummary):
    body: str = Field(description="The markdown after the front matter.")


def create_server(
    settings: Settings, *, allowed: AllowList | None = None, timeout_s: float = TIMEOUT_S
) -> AtriumServer[Store]:
    """The atrium server for the project of ``settings``.

    ``allowed`` defaults to ``ATRIUM_ALLOWED_COMMANDS`` from ``settings.environ``, else the
    read-only commands.
    """
    server = AtriumServer(
        NAME,
        version=__version__,
        title="Atrium",
        instructions=INSTRUCTIONS,
        lifespan=store_lifespan(settings),
        extensions=[viewer_extension()],
    )
    _add_cli_tool(server, settings, allowed or AllowList.from_environ(settings.environ), timeout_s)
    _add_playbook_tools(server, settings)
    _add_playbook_resource(server, settings)
    add_agent_tools(server, settings)
    add_artifact_resource(server)
    return server


def _add_cli_tool(
    server: AtriumServer[Store], settings: Settings, allowed: AllowList, timeout_s: float
) -> None:
    @server.tool(
        name="atrium",
        title="Run an atrium command",
        description=(
            "Run one atrium CLI command on this project and return its output. "
            f"Allowed commands start with: {allowed}. Add --json where a command offers it."
        ),
        # Each run keeps a new artifact: not idempotent. Destructive only when the operator
        # allowed more than the read-only default commands (ATRIUM_ALLOWED_COMMANDS).
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=not set(allowed.prefixes) <= set(AllowList.from_environ({}).prefixes),
            idempotent_hint=False,
            open_world_hint=False,
        ),
        meta=TOOL_META,
    )
    async def run_command(
        command: Annotated[
            str, Field(description="The command without `atrium`, e.g. `plugins mcp list --json`.")
        ],
        ctx: Context[Store, Any],
    ) -> Annotated[CallToolResult, CliRunResult]:
        caller = _caller(ctx)
        try:
            args = parse_command(command, allowed)
        except CommandRefused as exc:
            logger.info("refused %r for %s: %s", command, _who(caller), exc)
            raise ToolError(str(exc)) from None
        environ = {**settings.environ, **acting_environment(caller)}
        run = await run_cli(
            args, project=settings.project_dir, environ=environ, timeout_s=timeout_s
        )
        logger.info(
            "ran %r for %s (request %s): exit %s in %d ms",
            command,
            _who(caller),
            caller.request_id,
            run.exit_code,
            run.duration_ms,
        )
        artifact = await _save(ctx.request_context.lifespan_context, command, run, caller)
        return _cli_result(command, run, artifact.id)


def _caller(ctx: Context[Store, Any]) -> CallerIdentity:
    """Who the command runs for; a server run ``--unauthenticated`` runs it for nobody."""
    try:
        return current_caller(ctx)
    except LookupError:
        return CallerIdentity(NAME, None, None, frozenset(), "external", "-")


def _who(caller: CallerIdentity) -> str:
    return f"{caller.subject or 'anonymous'} (client {caller.client_id or '-'})"


async def _save(store: Store, command: str, run: CliRun, caller: CallerIdentity) -> ArtifactRecord:
    content = {
        "command": command,
        "caller": {
            "subject": caller.subject,
            "client_id": caller.client_id,
            "origin": caller.origin,
            "request_id": caller.request_id,
        },
        "args": list(run.args),
        "exit_code": run.exit_code,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "duration_ms": run.duration_ms,
    }
    try:
        return await store.artifacts.add(
            server=NAME, tool="atrium", kind=ARTIFACT_KIND, title=command, content=content
        )
    except StoreError as exc:
        logger.exception("could not store the run of %r", command)
        raise ToolError(
            f"the command ran (exit {run.exit_code}) but was not stored: {exc}"
        ) from exc


def _cli_result(command: str, run: CliRun, artifact_id: str) -> CallToolResult:
    structured = CliRunResult(
        command=command,
        exit_code=run.exit_code,
        stdout=run.stdout,
        stderr=run.stderr,
        artifact_id=artifact_id,
        duration_ms=run.duration_ms,
    )
    text = run.stdout if run.succeeded else (run.stderr or run.stdout)
    return CallToolResult(
        content=[
            TextContent(type="text", text=text or "(no output)"),
            artifact_link(NAME, artifact_id, command),
        ],
        structured_content=structured.model_dump(mode="json"),
        is_error=not run.succeeded,
    )


def _add_playbook_tools(server: AtriumServer[Store], settings: Settings) -> None:
    read_only = ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )

    @server.tool(
        title="List playbooks",
        description="List the project's playbooks: name, title, description and tags.",
        annotations=read_only,
    )
    def list_playbooks() -> PlaybookListing:
        found, problems = load_playbooks(settings)
        return PlaybookListing(
            playbooks=[_summary(playbook) for playbook in found],
            problems=[str(problem) for problem in problems],
        )

    @server.tool(
        title="Show a playbook",
        description="Show one playbook: its markdown body and its front matter.",
        annotations=read_only,
    )
    def show_playbook(name: PlaybookName) -> Annotated[CallToolResult, PlaybookDocument]:
        try:
            playbook = load_playbook(settings, name)
        except (NotFoundError, PlaybookError) as exc:
            raise ToolError(str(exc)) from None
        document = PlaybookDocument(**_summary(playbook).model_dump(), body=playbook.body)
        # The text a model reads is the markdown itself, not the JSON of the structured content.
        return CallToolResult(
            content=[TextContent(type="text", text=playbook.body)],
            structured_content=document.model_dump(mode="json"),
        )


def _add_playbook_resource(server: AtriumServer[Store], settings: Settings) -> None:
    @server.resource(
        "playbook://{name}",
        name="playbook",
        title="Playbook",
        description="A playbook of the project, as markdown.",
        mime_type="text/markdown",
    )
    def playbook_resource(name: str) -> str:
        try:
            return load_playbook(settings, name).body
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except PlaybookError as exc:
            raise ResourceError(str(exc)) from None


def _summary(playbook: Playbook) -> PlaybookSummary:
    return PlaybookSummary(
        name=playbook.name,
        title=playbook.title,
        description=playbook.description,
        tags=list(playbook.tags),
    )
