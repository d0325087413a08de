"""``sync_skills``: the project's ``skills/<name>/SKILL.md`` folders ⇄ the caller's skills in the
store, with a diff first, like ``atrium cloud sync local mcp``.

Directions:

* ``to_store``: each skill folder becomes the caller's skill of that name: added, or a new
  version when SKILL.md or a file differs (the store keeps the version before, so nothing is
  lost). With ``prune``, the caller's skills that have no folder are deleted from the store.
* ``to_disk``: each of the caller's skills is written to ``skills/<name>/`` (SKILL.md and its
  files). With ``prune``, folders of skills the caller does not have, and files a stored skill
  does not have, are deleted.
* ``both``: folders go to the store as with ``to_store`` (the disk wins where both differ:
  the store keeps the version it had), then skills without a folder are written to disk.
  ``prune`` makes no sense with both and is refused.

A folder that cannot be a skill (no SKILL.md, errors in it, a name that is not its folder's,
files over the bounds, a file that is not UTF-8 text, a symbolic link) is skipped and named in
``problems``; nothing else is held up by it. Paths are checked before anything is written
(``skills_format.path_problem``), so a write never leaves ``skills/``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from atrium.auth.roles import ADMIN
from atrium.servers.marketplace.skills_api import (
    SyncEntry,
    SyncReport,
    from_store,
    signed_in,
    subject_of,
)
from atrium.servers.marketplace.skills_format import (
    MAX_FILE_BYTES,
    NAME,
    SKILL_FILE,
    file_problems,
    parse_skill,
    path_problem,
    to_document,
)
from atrium.servers.toolkit import AtriumServer
from atrium.settings import Settings
from atrium.store import (
    AlreadyExists,
    SkillDocument,
    SkillRecord,
    Store,
    StoreError,
    UnknownSkill,
    VersionConflict,
)

logger = logging.getLogger(__name__)

SKILLS_DIR = "skills"

Direction = Literal["to_store", "to_disk", "both"]
Action = Literal["added", "changed", "removed", "unchanged"]


@dataclass(frozen=True)
class DiskSkill:
    name: str
    content: str
    files: dict[str, str]


@dataclass(frozen=True)
class Change:
    """One skill's line of the diff; ``target`` is where it is (or would be) written."""

    name: str
    action: Action
    target: Literal["store", "disk"]
    detail: str
    document: SkillDocument | None = None
    record: SkillRecord | None = None
    stale_files: tuple[str, ...] = ()


@dataclass
class DiskState:
    """The skill folders that can be stored, and those skipped with the reason."""

    skills: dict[str, DiskSkill] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        return [f"{SKILLS_DIR}/{name}: {reason}" for name, reason in self.skipped.items()]


def read_disk(root: Path) -> DiskState:
    """The skill folders under ``root``: those that can be stored, and why the others cannot."""
    state = DiskState()
    if not root.is_dir():
        return state
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            state.skills[folder.name] = _read_folder(folder)
        except _Unreadable as exc:
            state.skipped[folder.name] = str(exc)
    return state


class _Unreadable(Exception):
    pass


def _read_folder(folder: Path) -> DiskSkill:
    if folder.is_symlink():
        raise _Unreadable("a symbolic link; skill folders are read only where they are")
    if not NAME.match(folder.name):
        raise _Unreadable("the folder's name is not a skill name (lowercase letters, digits, '-')")
    skill_md = folder / SKILL_FILE
    if not skill_md.is_file() or skill_md.is_symlink():
        raise _Unreadable(f"no {SKILL_FILE} file")
    content = _text(skill_md)
    parsed = parse_skill(content)
    if parsed.errors:
        first = parsed.errors[0]
        where = f"line {first.line}: " if first.line else ""
        raise _Unreadable(f"{SKILL_FILE}: {where}{first.message}")
    if parsed.name != folder.name:
        raise _Unreadable(f"{SKILL_FILE} names the skill '{parsed.name}', not its folder's name")
    files = _files(folder)
    if problems := file_problems(files):
        raise _Unreadable("; ".join(problems))
    return DiskSkill(folder.name, content, files)


def _files(folder: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if relative == SKILL_FILE or any(p.startswith(".") for p in relative.split("/")):
            continue
        if path.is_symlink():
            raise _Unreadable(f"'{relative}' is a symbolic link; only plain files are stored")
        if path.is_dir():
            continue
        if (problem := path_problem(relative)) is not None:
            raise _Unreadable(problem)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise _Unreadable(f"'{relative}' is over {MAX_FILE_BYTES} bytes")
        files[relative] = _text(path)
    return files


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _Unreadable(f"'{path.name}' is not UTF-8 text; skills keep text files only") from None
    except OSError as exc:
        raise _Unreadable(f"cannot read '{path.name}': {exc.strerror}") from None


def plan(
    direction: Direction,
    disk: DiskState,
    stored: list[SkillRecord],
    *,
    prune: bool,
) -> list[Change]:
    """What a sync in ``direction`` would change, by skill name. A skipped folder is left
    alone: its skill is neither pruned from the store nor, with ``both``, written over."""
    by_name = {record.name: record for record in stored}
    on_disk = disk.skills.keys() | disk.skipped.keys()
    changes: list[Change] = []
    if direction in ("to_store", "both"):
        changes += [
            _to_store(skill, by_name.get(name)) for name, skill in sorted(disk.skills.items())
        ]
        if prune:
            changes += [
                Change(name, "removed", "store", f"version {record.version} and its history")
                for name, record in sorted(by_name.items())
                if name not in on_disk
            ]
    if direction in ("to_disk", "both"):
        for name, record in sorted(by_name.items()):
            if direction == "both" and name in on_disk:
                continue
            changes.append(_to_disk(record, disk.skills.get(name), prune=prune))
        if prune:
            changes += [
                Change(name, "removed", "disk", f"{SKILLS_DIR}/{name}/")
                for name in sorted(disk.skills)
                if name not in by_name
            ]
    return changes


def _to_store(skill: DiskSkill, record: SkillRecord | None) -> Change:
    document = to_document(parse_skill(skill.content), skill.files)
    if record is None:
        return Change(skill.name, "added", "store", "new skill, version 1", document, None)
    detail = _difference(record.content, record.files, skill.content, skill.files)
    if not detail:
        return Change(skill.name, "unchanged", "store", f"version {record.version}")
    detail = f"version {record.version} → {record.version + 1}: {detail}"
    return Change(skill.name, "changed", "store", detail, document, record)


def _to_disk(record: SkillRecord, skill: DiskSkill | None, *, prune: bool) -> Change:
    if skill is None:
        return Change(record.name, "added", "disk", f"{SKILLS_DIR}/{record.name}/", record=record)
    stale = tuple(sorted(set(skill.files) - set(record.files))) if prune else ()
    # What the folder holds afterwards: the stored files, and without prune the others too.
    after = record.files if prune else {**skill.files, **record.files}
    detail = _difference(skill.content, skill.files, record.content, after)
    if not detail:
        return Change(record.name, "unchanged", "disk", f"version {record.version}")
    return Change(record.name, "changed", "disk", detail, record=record, stale_files=stale)


def _difference(
    old_content: str, old_files: dict[str, str], new_content: str, new_files: dict[str, str]
) -> str:
    parts = [SKILL_FILE] if old_content != new_content else []
    parts += [f"+{path}" for path in sorted(set(new_files) - set(old_files))]
    parts += [f"-{path}" for path in sorted(set(old_files) - set(new_files))]
    parts += [
        f"~{path}" for path in sorted(set(old_files) & set(new_files))
        if old_files[path] != new_files[path]
    ]  # fmt: skip
    return " ".join(parts)


async def apply(changes: list[Change], store: Store, owner: str, root: Path) -> list[str]:
    """Carry out ``changes`` for ``owner``; what could not be done, one line each."""
    problems: list[str] = []
    for change in changes:
        try:
            await _apply_one(change, store, owner, root)
        except (AlreadyExists, UnknownSkill, VersionConflict) as exc:  # changed meanwhile
            problems.append(f"{change.name}: not written to the store: {exc.reason}")
        except StoreError as exc:  # the driver's reason may name the database: logged only
            logger.error("sync_skills %s: %s", change.name, exc)
            problems.append(
                f"{change.name}: not written to the store: the database failed; the server"
                " log says why"
            )
        except OSError as exc:
            problems.append(f"{change.name}: not written to {SKILLS_DIR}/: {exc.strerror}")
    return problems


async def _apply_one(change: Change, store: Store, owner: str, root: Path) -> None:
    if change.action == "unchanged":
        return
    if change.target == "store":
        if change.action == "removed":
            await store.skills.delete(owner, change.name)
        elif change.record is None:
            assert change.document is not None
            await store.skills.create(owner, change.document)
        else:
            assert change.document is not None
            await store.skills.update(
                owner, change.name, change.document, expected_version=change.record.version
            )
        return
    folder = _inside(root, change.name)
    if change.action == "removed":
        shutil.rmtree(folder)
        return
    assert change.record is not None
    _write(folder, SKILL_FILE, change.record.content)
    for path, text in change.record.files.items():
        _write(folder, path, text)
    for path in change.stale_files:
        (_inside(folder, path)).unlink(missing_ok=True)


def _inside(root: Path, relative: str) -> Path:
    """``root/relative``, refused unless it stays inside ``root`` (checked names make that
    so; this is the last guard before a write)."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()) or target == root.resolve():
        raise OSError(0, f"'{relative}' is outside {SKILLS_DIR}/")
    return target


def _write(folder: Path, relative: str, text: str) -> None:
    """Write the file whole or not at all: a temporary file renamed over the old one."""
    target = _inside(folder, relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".sync-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as output:
            output.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add_sync_tool(server: AtriumServer[Store], settings: Settings) -> None:
    """Register ``sync_skills`` on ``server``."""

    @server.tool(
        title="Sync skills with the project folder",
        description=(
            "Synchronise your skills with the project's skills/<name>/SKILL.md folders:"
            " to_store (folders → your skills, a new version where they differ), to_disk (your"
            " skills → folders) or both (folders win, then skills without a folder are written)."
            " dry_run (the default) only shows the diff. prune also deletes what the other side"
            " lacks. Needs the admin scope: the folder is the project's, shared by everyone."
        ),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def sync_skills(
        direction: Annotated[
            Literal["to_store", "to_disk", "both"], Field(description="Which way to copy.")
        ],
        ctx: Context[Store, Any],
        dry_run: Annotated[bool, Field(description="Only show what would change.")] = True,
        prune: Annotated[
            bool, Field(description="Also delete what the other side does not have.")
        ] = False,
    ) -> SyncReport:
        caller = signed_in(ctx)
        if ADMIN not in caller.scopes:
            raise ToolError(
                "sync_skills needs the admin scope: it reads and writes the project's skills/"
                " folder on the server, which every user shares"
            )
        if prune and direction == "both":
            raise ToolError("prune: not with direction both, where each side adds to the other")
        store = ctx.request_context.lifespan_context
        subject = subject_of(caller)
        root = settings.project_dir / SKILLS_DIR
        disk = read_disk(root)
        problems = disk.problems
        changes = plan(direction, disk, await from_store(store.skills.owned(subject)), prune=prune)
        applied = not dry_run
        if applied:
            problems += await apply(changes, store, subject, root)
        return SyncReport(
            direction=direction,
            dry_run=dry_run,
            applied=applied,
            changes=[
                SyncEntry(name=c.name, action=c.action, target=c.target, detail=c.detail)
                for c in changes
            ],
            problems=problems,
        )
