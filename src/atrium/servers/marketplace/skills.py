"""The ``marketplace`` server's skills tools (issue 14): Agent Skills, owned, shared, versioned.

* ``create_skill`` stores a SKILL.md (``skills_format``) and its extra files as version 1 of a
  skill of the caller's; ``update_skill`` stores the next version, naming the version it was
  made from, and is refused when another update came first (``store.skills``).
* ``get_skill`` reads a skill: any stored version of the caller's own, only the current version
  of another user's shared one (an earlier version may be what its owner meant to withdraw);
  ``list_skills`` lists the skills the caller may read, filtered by text and tag, a page at a
  time with a cursor.
* ``analyze_skill`` lints a stored skill or a SKILL.md not stored yet (``skills_lint``), in a
  worker thread, refusing a SKILL.md over ``MAX_CONTENT_BYTES`` before any rule runs.
* ``sync_skills`` synchronises the project's ``skills/`` folder with the caller's skills
  (``skills_sync``).

Ownership and sharing: a skill belongs to the subject that created it, and only that subject
can update it. ``shared: true`` makes it readable (get, list, analyze) by every signed-in user;
names are unique per owner, and a reader's own skill is shown before a shared one of the same
name (``owner`` names another). Sharing is for reading only: an agent's ``skills:`` loads its
user's own skills, never a shared one (``atrium.ai.service``), since a skill's body steers the
model with that user's scopes. ``sync_skills`` reads and writes the project's folder on the
server's disk, which every user of this Atrium shares, so it takes the ``admin`` scope and
syncs the admin's own skills.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from atrium.auth.assertion import CallerIdentity
from atrium.servers.marketplace import skills_lint as lint
from atrium.servers.marketplace import skills_sync as sync
from atrium.servers.marketplace.skills_api import (
    Analysis,
    SkillContent,
    SkillPage,
    SkillWritten,
    decode_cursor,
    encode_cursor,
    findings_out,
    from_store,
    info,
    signed_in,
    store_failed,
    subject_of,
)
from atrium.servers.marketplace.skills_format import (
    MAX_CONTENT_BYTES,
    NAME_RULE,
    SKILL_FILE,
    Finding,
    ParsedSkill,
    file_problems,
    parse_skill,
    to_document,
)
from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import (
    AlreadyExists,
    SkillRecord,
    Store,
    StoreError,
    UnknownSkill,
    VersionConflict,
)
from atrium.store.secrets import PROJECT_OWNER

SkillName = Annotated[str, Field(description=f"The skill's name: {NAME_RULE}.", max_length=64)]
Owner = Annotated[
    str | None,
    Field(
        description="Whose skill: the owner list_skills shows. Omit for yours, else a shared one."
    ),
]
Content = Annotated[
    str,
    Field(
        description=(
            "The whole SKILL.md: a '---' line, YAML frontmatter with name and description"
            " (optional: license, compatibility, allowed-tools, metadata; tags as metadata.tags,"
            " e.g. 'writing, seo'), a '---' line, then the Markdown instructions."
        )
    ),
]
Files = Annotated[
    dict[str, str] | None,
    Field(description="Extra files as relative path → text, e.g. references/REFERENCE.md."),
]

_WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
_READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def add_skills_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register the skills tools on ``server``."""
    _add_write_tools(server)
    _add_read_tools(server)
    _add_analyze_tool(server)
    sync.add_sync_tool(server, settings)


def _add_write_tools(server: AtriumServer[Store]) -> None:
    @server.tool(
        title="Create a skill",
        description=(
            "Store a new Agent Skill of yours (SKILL.md and optional files) as version 1."
            " Set shared to let every signed-in user read it."
        ),
        annotations=_WRITE,
    )
    async def create_skill(
        content: Content,
        ctx: Context[Store, Any],
        files: Files = None,
        shared: Annotated[bool, Field(description="Readable by every signed-in user.")] = False,
    ) -> SkillWritten:
        subject = subject_of(signed_in(ctx))
        parsed = _valid(content, files or {})
        store = ctx.request_context.lifespan_context
        try:
            record = await store.skills.create(
                subject, to_document(parsed, files or {}), shared=shared
            )
        except AlreadyExists:
            raise ToolError(
                f"content: you have a skill '{parsed.name}' already; change it with"
                " update_skill (get_skill shows its version)"
            ) from None
        except StoreError as exc:
            raise store_failed(exc) from None
        return SkillWritten(skill=info(record, subject), findings=findings_out(parsed.findings))

    @server.tool(
        title="Update a skill",
        description=(
            "Store a new version of one of your skills; the version before is kept. Name the"
            " version you changed (get_skill shows it): if another update came first, this one"
            " is refused, so read the skill again and apply your change to its new version."
        ),
        annotations=_WRITE,
    )
    async def update_skill(
        name: SkillName,
        version: Annotated[int, Field(description="The version you changed.", ge=1)],
        content: Content,
        ctx: Context[Store, Any],
        files: Annotated[
            dict[str, str] | None,
            Field(description="The new files (path → text); omit to keep the current ones."),
        ] = None,
        shared: Annotated[
            bool | None, Field(description="Share or unshare it; omit to keep as it is.")
        ] = None,
    ) -> SkillWritten:
        subject = subject_of(signed_in(ctx))
        store = ctx.request_context.lifespan_context
        current = await from_store(store.skills.get(subject, name))
        if current is None:
            raise ToolError(await _not_yours(store, subject, name))
        kept = current.files if files is None else files
        parsed = _valid(content, kept)
        if parsed.name != name:
            raise ToolError(
                f"content: its frontmatter names the skill '{parsed.name}', not '{name}';"
                " a skill keeps its name (create a new one to rename it)"
            )
        try:
            record = await store.skills.update(
                subject, name, to_document(parsed, kept), expected_version=version, shared=shared
            )
        except VersionConflict as exc:
            raise ToolError(
                f"version: you changed version {exc.expected} of '{name}', but it is at version"
                f" {exc.current} now: another update came first. Read it again with get_skill"
                f" and apply your change to version {exc.current}."
            ) from None
        except UnknownSkill:
            raise ToolError(await _not_yours(store, subject, name)) from None
        except StoreError as exc:
            raise store_failed(exc) from None
        return SkillWritten(skill=info(record, subject), findings=findings_out(parsed.findings))


def _add_read_tools(server: AtriumServer[Store]) -> None:
    @server.tool(
        title="Get a skill",
        description="Read a skill (yours or a shared one): its SKILL.md, files and versions.",
        annotations=_READ,
    )
    async def get_skill(
        name: SkillName,
        ctx: Context[Store, Any],
        owner: Owner = None,
        version: Annotated[
            int | None,
            Field(description="An earlier version to read; omit for the current.", ge=1),
        ] = None,
    ) -> SkillContent:
        subject = subject_of(signed_in(ctx))
        store = ctx.request_context.lifespan_context
        record = await _visible(store, subject, name, owner)
        return await _version_shown(store, record, subject, version)

    @server.tool(
        title="List skills",
        description=(
            "List the skills you may read (yours and shared ones) by name, a page at a time;"
            " filter by text (in name, description or SKILL.md) and by tag."
        ),
        annotations=_READ,
    )
    async def list_skills(
        ctx: Context[Store, Any],
        query: Annotated[
            str | None, Field(description="Text to look for (any case).", max_length=200)
        ] = None,
        tag: Annotated[str | None, Field(description="Only skills with this tag.")] = None,
        mine: Annotated[bool, Field(description="Only your own skills.")] = False,
        cursor: Annotated[
            str | None, Field(description="next_cursor of the page before; omit for the first.")
        ] = None,
        limit: Annotated[int, Field(description="Skills per page.", ge=1, le=100)] = 20,
    ) -> SkillPage:
        subject = subject_of(signed_in(ctx))
        store = ctx.request_context.lifespan_context
        after = decode_cursor(cursor) if cursor else None
        page = await from_store(
            store.skills.list(
                subject, text=query, tag=tag, owned_only=mine, after=after, limit=limit + 1
            )
        )
        more = len(page) > limit
        page = page[:limit]
        return SkillPage(
            skills=[info(skill, subject) for skill in page],
            next_cursor=encode_cursor(page[-1]) if more else None,
        )


def _add_analyze_tool(server: AtriumServer[Store]) -> None:
    @server.tool(
        title="Analyze a skill",
        description=(
            "Lint a skill: the frontmatter and name rules, description length, body size in"
            " tokens, mcp__<server>__<tool> names of servers that are not hosted, secrets it"
            " names that are not stored, and text that looks like prompt injection. Give name"
            " (a stored skill) or content (a SKILL.md, e.g. before creating it)."
        ),
        annotations=_READ,
    )
    async def analyze_skill(
        ctx: Context[Store, Any],
        name: Annotated[str | None, Field(description="A skill you may read.")] = None,
        owner: Owner = None,
        content: Annotated[str | None, Field(description="A SKILL.md to check instead.")] = None,
    ) -> Analysis:
        caller = signed_in(ctx)
        store = ctx.request_context.lifespan_context
        if (name is None) == (content is None):
            raise ToolError("name, content: give exactly one (a stored skill, or a SKILL.md)")
        if content is None:
            assert name is not None
            content = (await _visible(store, subject_of(caller), name, owner)).content
        # Refused before any rule runs: every rule's cost grows with the text.
        if (size := len(content.encode("utf-8"))) > MAX_CONTENT_BYTES:
            raise ToolError(
                f"content: the SKILL.md is {size} bytes; at most {MAX_CONTENT_BYTES} are"
                " analyzed (or stored)"
            )
        work = functools.partial(
            lint.analyze,
            content,
            servers=await _hosted_servers(store),
            secrets=await _secret_names(store, caller),
            project=caller.admin,
        )
        parsed, findings = await anyio.to_thread.run_sync(work)
        return _analysis(parsed, findings)


def _valid(content: str, files: dict[str, str]) -> ParsedSkill:
    """SKILL.md and files that can be stored, or a tool error naming what is wrong."""
    parsed = parse_skill(content)
    if parsed.errors:
        told = "; ".join(
            f"line {f.line}: {f.message}" if f.line else f.message for f in parsed.errors
        )
        raise ToolError(f"content: {SKILL_FILE} is not a valid skill: {told}")
    if problems := file_problems(files):
        raise ToolError(f"files: {'; '.join(problems)}")
    return parsed


async def _visible(store: Store, subject: str, name: str, owner: str | None) -> SkillRecord:
    record = await from_store(store.skills.visible(subject, name, owner=owner))
    if record is None:
        whose = f"of {owner} " if owner else ""
        raise ToolError(
            f"name: no skill '{name}' {whose}among yours or those shared with you"
            " (list_skills shows them)"
        )
    return record


async def _not_yours(store: Store, subject: str, name: str) -> str:
    shared = await from_store(store.skills.visible(subject, name))
    if shared is not None:
        return (
            f"name: skill '{name}' is {shared.owner}'s, shared with you; only its owner can"
            " change it"
        )
    return f"name: you have no skill '{name}'; create it with create_skill"


async def _version_shown(
    store: Store, record: SkillRecord, subject: str, version: int | None
) -> SkillContent:
    """``record`` at ``version`` (None: the current one), loading only the version shown.
    Another user sees only the current version of a shared skill: an earlier one may hold
    what its owner took out (a secret, a mistake), and sharing shares what is current."""
    mine = record.owner == subject
    numbers = await from_store(store.skills.version_numbers(record.id)) if mine else []
    wanted = version or record.version
    content, files = record.content, record.files
    if wanted != record.version:
        shown = await from_store(store.skills.version_of(record.id, wanted)) if mine else None
        if shown is None:
            raise ToolError(_no_version(record, version, numbers))
        content, files = shown.content, shown.files
    return SkillContent(
        **info(record, subject).model_dump(),
        shown_version=wanted,
        content=content,
        files=files,
        versions=numbers or [record.version],
    )


def _no_version(record: SkillRecord, version: int | None, numbers: list[int]) -> str:
    if not numbers:
        return (
            f"version: {record.owner}'s '{record.name}' is shared at its current version"
            f" ({record.version}) only; earlier versions are for its owner"
        )
    listed = ", ".join(str(number) for number in numbers)
    return f"version: '{record.name}' has no version {version}; it has {listed}"


async def _hosted_servers(store: Store) -> frozenset[str]:
    """The enabled servers of the registry: what ``mcp__<server>__`` may name."""
    records = await from_store(store.servers.list())
    return frozenset(record.name for record in records if record.enabled)


async def _secret_names(store: Store, caller: CallerIdentity) -> frozenset[str]:
    """The secrets ``caller``'s skills are checked against: their own, and for an admin the
    project's too (whether a project secret exists is not for everyone to learn)."""
    owners = (subject_of(caller), PROJECT_OWNER) if caller.admin else (subject_of(caller),)
    records = [record for owner in owners for record in await from_store(store.secrets.list(owner))]
    return frozenset(record.name for record in records)


def _analysis(parsed: ParsedSkill, findings: list[Finding]) -> Analysis:
    return Analysis(
        name=parsed.name,
        ok=not any(f.severity == "error" for f in findings),
        findings=findings_out(findings),
        body_lines=len(parsed.body.splitlines()),
        body_tokens=lint.estimate_tokens(parsed.body),
        token_estimate=lint.TOKEN_ESTIMATE,
    )
