"""The ``marketplace`` server's skills tools (issue 14): Agent Skills, owned, shared, versioned.

* ``create_skill`` stores a SKILL.md (``skills_format``) and its extra files as version 1 of a
  skill of the caller's; ``update_skill`` stores the next version, naming the version it was
  made from, and is refused when another update came first (``store.skills``).
* ``get_skill`` reads a skill (any stored version), ``list_skills`` lists the skills the caller
  may read, filtered by text and tag, a page at a time with a cursor.
* ``analyze_skill`` lints a stored skill or a SKILL.md not stored yet (``skills_lint``).
* ``sync_skills`` synchronises the project's ``skills/`` folder with the caller's skills
  (``skills_sync``).

Ownership and sharing: a skill belongs to the subject that created it, and only that subject
can update it. ``shared: true`` makes it readable (get, list, analyze, and agents' ``skills:``)
by every signed-in user; names are unique per owner, a reader's own skill wins over a shared
one of the same name, and among shared ones the oldest. ``sync_skills`` reads and writes the
project's folder on the server's disk, which every user of this Atrium shares, so it takes the
``admin`` scope and syncs the admin's own skills.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

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
    subject_of,
)
from atrium.servers.marketplace.skills_catalog import hosted_tools
from atrium.servers.marketplace.skills_format import (
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
    _add_analyze_tool(server, settings)
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
            raise ToolError(f"the skill was not stored: {exc.reason}") from None
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
            raise ToolError(f"the skill was not stored: {exc.reason}") from None
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
        history = await from_store(store.skills.history(record.id))
        shown = next((v for v in history if v.version == (version or record.version)), None)
        if shown is None:
            raise ToolError(
                f"version: '{name}' has no version {version}; it has"
                f" {', '.join(str(v.version) for v in history)}"
            )
        return SkillContent(
            **info(record, subject).model_dump(),
            shown_version=shown.version,
            content=shown.content,
            files=shown.files,
            versions=[v.version for v in history],
        )

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


def _add_analyze_tool(server: AtriumServer[Store], settings: Settings) -> None:
    @server.tool(
        title="Analyze a skill",
        description=(
            "Lint a skill: the frontmatter and name rules, description length, body size in"
            " tokens, tools it names that no hosted server offers you, secrets it names that are"
            " not stored, and text that looks like prompt injection. Give name (a stored skill)"
            " or content (a SKILL.md, e.g. before creating it)."
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
        if name is not None:
            content = (await _visible(store, subject_of(caller), name, owner)).content
        assert content is not None
        parsed = parse_skill(content)
        findings = [*parsed.findings, *lint.size_findings(parsed)]
        findings += lint.injection_findings(content)
        mentions = lint.tool_mentions(content)
        if mentions:
            bare = any(mention.server is None for mention in mentions)
            wanted = None if bare else {m.server for m in mentions if m.server is not None}
            catalog = await from_store(
                hosted_tools(
                    settings, store, subject=subject_of(caller), scopes=caller.scopes, wanted=wanted
                )
            )
            findings += lint.tool_findings(mentions, catalog)
        findings += lint.secret_findings(
            lint.secret_mentions(content), await _secret_names(store, subject_of(caller))
        )
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


async def _secret_names(store: Store, subject: str) -> frozenset[str]:
    """The secrets a skill of ``subject``'s can name: their own and the project's."""
    owners = (subject, PROJECT_OWNER)
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
