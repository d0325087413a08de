"""Playbooks: the markdown files in ``services/playbooks/`` that the atrium server lists and shows.

A playbook is ``<name>.md`` with an optional YAML front matter block::

    ---
    title: Troubleshoot a server
    description: What to look at when a server does not start or a tool fails.
    tags: [operations, mcp]
    ---
    # Markdown body ...

Names are restricted to ``[a-z0-9-]`` (the server-name rule), so a name from a caller can
never reach outside the folder. Other keys in the front matter are ignored rather than refused:
the same files are often read by other markdown tools, which add keys of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from atrium import yamlio
from atrium.errors import AtriumError, NotFoundError, Problem, display_path
from atrium.settings import Settings

PLAYBOOK_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?:(.*?)\r?\n)?---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


class PlaybookError(AtriumError):
    """A playbook file cannot be read; ``problem`` names the file and the line."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    title: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Playbook:
    name: str
    title: str
    description: str
    tags: tuple[str, ...]
    body: str
    source: str


def playbooks_dir(settings: Settings) -> Path:
    return settings.project_dir / "services" / "playbooks"


def playbook_names(settings: Settings) -> list[str]:
    """The names of the ``*.md`` files in the folder that are valid playbook names, sorted."""
    folder = playbooks_dir(settings)
    if not folder.is_dir():
        return []
    return sorted(
        path.stem
        for path in folder.glob("*.md")
        if PLAYBOOK_NAME.match(path.stem) and path.is_file()
    )


def load_playbooks(settings: Settings) -> tuple[list[Playbook], list[PlaybookError]]:
    """Every readable playbook, sorted by name, and the problem of each one that is not."""
    found: list[Playbook] = []
    problems: list[PlaybookError] = []
    for name in playbook_names(settings):
        try:
            found.append(_read(settings, name))
        except PlaybookError as exc:
            problems.append(exc)
    return found, problems


def load_playbook(settings: Settings, name: str) -> Playbook:
    """The playbook called ``name``; ``NotFoundError`` lists the known names."""
    known = playbook_names(settings)
    if name not in known:
        raise NotFoundError("playbook", name, known)
    return _read(settings, name)


def _read(settings: Settings, name: str) -> Playbook:
    path = playbooks_dir(settings) / f"{name}.md"
    source = display_path(path, settings.project_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookError(Problem(source, f"cannot read the file: {exc}")) from None
    return parse_playbook(name, text, source)


def parse_playbook(name: str, text: str, source: str) -> Playbook:
    """Split and validate the front matter; raise ``PlaybookError`` naming the line at fault."""
    text = text.removeprefix("\ufeff")
    match = _FRONT_MATTER.match(text)
    front = _front_matter(match.group(1) or "", source) if match else FrontMatter()
    body = text[match.end() :] if match else text
    return Playbook(
        name=name,
        title=front.title or name,
        description=front.description,
        tags=front.tags,
        body=body.lstrip("\r\n"),
        source=source,
    )


def _front_matter(block: str, source: str) -> FrontMatter:
    try:
        data = yamlio.loads(block, source)
    except yamlio.YamlSyntaxError as exc:
        raise PlaybookError(_below_the_fence(exc.problem)) from None
    if data is None:
        return FrontMatter()
    if not isinstance(data, dict):
        raise PlaybookError(Problem(source, "the front matter must be a mapping", line=2))
    try:
        return FrontMatter.model_validate(dict(data))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = yamlio.position(data, error["loc"])
        problem = Problem(
            source,
            error["msg"],
            key_path=yamlio.key_path(error["loc"]),
            line=where[0] + 1 if where else None,
            column=where[1] if where else None,
        )
        raise PlaybookError(problem) from None


def _below_the_fence(problem: Problem) -> Problem:
    # The YAML block starts on the line after the opening "---".
    line = problem.line + 1 if problem.line is not None else None
    return Problem(problem.source, problem.message, line=line, column=problem.column)
