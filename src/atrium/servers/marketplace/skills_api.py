"""The wire shapes of the marketplace's skills tools, and the caller they act for.

Every skills tool acts for a signed-in caller (``current_caller``): skills belong to a subject,
so an anonymous caller, or a server run without the gateway, gets a tool error saying so.
Store failures become tool errors that say what could not be done, never why: the driver's
reason can carry the database's host, schema or file path, which are the operator's to know,
so it goes to the server log (``store_failed``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from atrium.auth.assertion import CallerIdentity
from atrium.servers.marketplace.skills_format import Finding
from atrium.servers.trust import signed_in_caller
from atrium.store import SkillSummary, Store, StoreError

T = TypeVar("T")

logger = logging.getLogger(__name__)


class FindingOut(BaseModel):
    severity: Literal["error", "warning", "info"]
    line: int | None = Field(description="The line of SKILL.md, from 1; null: the whole skill.")
    rule: str = Field(description="A stable id of the rule, e.g. name-format, injection-phrase.")
    message: str


class SkillInfo(BaseModel):
    name: str
    owner: str = Field(description="The subject that owns the skill.")
    mine: bool = Field(description="Whether you own it (only its owner can change it).")
    description: str
    shared: bool = Field(description="Readable by every signed-in user.")
    version: int = Field(description="The current version; update_skill names it.")
    tags: list[str]
    updated_at: str


class SkillWritten(BaseModel):
    """The answer of create_skill and update_skill."""

    skill: SkillInfo
    findings: list[FindingOut] = Field(
        description="Warnings about the format (analyze_skill checks more)."
    )


class SkillContent(SkillInfo):
    """The answer of get_skill."""

    shown_version: int = Field(description="The version whose content this is.")
    content: str = Field(description="SKILL.md of that version.")
    files: dict[str, str] = Field(description="The skill's other files: path → text.")
    versions: list[int] = Field(
        description=(
            "The versions you may read, newest first: every stored one for your own skill,"
            " only the current one for another user's shared skill."
        )
    )


class SkillPage(BaseModel):
    skills: list[SkillInfo]
    next_cursor: str | None = Field(description="Pass it as cursor for the next page; null: done.")


class Analysis(BaseModel):
    name: str | None = Field(description="The skill's name, when its frontmatter has a valid one.")
    ok: bool = Field(description="No finding of severity error.")
    findings: list[FindingOut]
    body_lines: int
    body_tokens: int = Field(description="Estimated: see token_estimate.")
    token_estimate: str = Field(description="How body_tokens is estimated.")


class SyncEntry(BaseModel):
    name: str
    action: Literal["added", "changed", "removed", "unchanged"]
    target: Literal["store", "disk"] = Field(description="Where the change is written.")
    detail: str = Field(description="Versions, and SKILL.md/+added/-removed/~changed files.")


class SyncReport(BaseModel):
    direction: Literal["to_store", "to_disk", "both"]
    dry_run: bool
    applied: bool = Field(description="Whether the changes were written.")
    changes: list[SyncEntry]
    problems: list[str] = Field(description="Folders skipped and writes that failed, and why.")


def signed_in(ctx: Context[Store, Any]) -> CallerIdentity:
    """The caller, who must be signed in: skills are someone's."""
    return signed_in_caller(
        ctx,
        "skills belong to signed-in users: call the marketplace through the Atrium"
        " gateway with an access token",
    )


def subject_of(caller: CallerIdentity) -> str:
    assert caller.subject is not None  # signed_in refuses anonymous callers
    return caller.subject


def info(skill: SkillSummary, subject: str) -> SkillInfo:
    return SkillInfo(
        name=skill.name,
        owner=skill.owner,
        mine=skill.owner == subject,
        description=skill.description,
        shared=skill.shared,
        version=skill.version,
        tags=list(skill.tags),
        updated_at=skill.updated_at.isoformat(),
    )


def findings_out(findings: list[Finding] | tuple[Finding, ...]) -> list[FindingOut]:
    return [
        FindingOut(severity=f.severity, line=f.line, rule=f.rule, message=f.message)
        for f in sorted(findings, key=lambda f: (f.line or 0, f.rule))
    ]


def encode_cursor(skill: SkillSummary) -> str:
    raw = json.dumps([skill.name, skill.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (name, id) a cursor from ``list_skills`` carries; a tool error for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, skill_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise ToolError(
            "cursor: not a cursor list_skills gave; omit it for the first page"
        ) from None
    if not isinstance(name, str) or not isinstance(skill_id, str):
        raise ToolError("cursor: not a cursor list_skills gave; omit it for the first page")
    return name, skill_id


async def from_store(work: Awaitable[T]) -> T:
    """Await a store call; a failing database is a tool error saying what failed."""
    try:
        return await work
    except StoreError as exc:
        raise store_failed(exc) from None


def store_failed(exc: StoreError) -> ToolError:
    """The tool error for a failing database: what could not be done (our own words), with
    the driver's reason logged, not told (see the module docstring)."""
    logger.error("skills: %s", exc)
    return ToolError(f"cannot {exc.action}: the database failed; the server log says why")
