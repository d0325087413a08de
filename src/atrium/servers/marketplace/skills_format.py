"""SKILL.md, the Agent Skills format (agentskills.io, "Specification"), parsed and checked.

A skill is a folder with a ``SKILL.md``: YAML frontmatter between ``---`` lines, then a Markdown
body, the instructions. The frontmatter's fields, as the specification (and its reference
validator, ``skills-ref``) has them:

* ``name`` (required): 1-64 characters, lowercase letters, digits and ``-``, not starting or
  ending with ``-``, no ``--``; the folder's name.
* ``description`` (required): 1-1024 characters, what the skill does and when to use it.
* ``license``, ``compatibility`` (at most 500 characters), ``metadata`` (string keys to string
  values), ``allowed-tools`` (a space-separated string or a list of strings): optional.

Atrium reads its tags from ``metadata.tags`` (a string: tags separated by commas or spaces,
each lowercase letters, digits and ``-``), since ``metadata`` is where the specification puts a
client's own properties. Other fields are kept and warned about, not refused: clients add their
own (a SKILL.md written for one client still loads here).

The extra files of a skill (``scripts/``, ``references/``, ``assets/``...) are stored as text
(UTF-8), bounded: at most ``MAX_FILES`` files of ``MAX_FILE_BYTES`` each and ``MAX_FILES_BYTES``
together, at relative paths of plain segments (no ``..``, no hidden files), so that writing them
back to ``skills/<name>/`` can never leave the folder.

YAML anchors and aliases (``&a``, ``*a``) are refused in the frontmatter before it is built:
none of the specification's fields needs them, and nested aliases expand exponentially (the
"billion laughs") in anything that walks or prints the values.

``parse_skill`` never raises: what is wrong is a list of ``Finding``s with the line in SKILL.md
(counted from 1, the opening ``---`` included), and a skill with an ``error`` finding is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import AliasEvent, NodeEvent

from atrium import yamlio
from atrium.store import SkillDocument

SKILL_FILE = "SKILL.md"
NAME = re.compile(r"^(?!-)(?!.*--)[a-z0-9-]{1,64}(?<!-)$")
NAME_RULE = "1-64 lowercase letters, digits and '-', not starting or ending with '-', without '--'"
MAX_DESCRIPTION = 1024
MAX_COMPATIBILITY = 500
SPEC_FIELDS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
TAG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
TAG_RULE = "1-32 lowercase letters, digits and '-'"
MAX_TAGS = 16

MAX_CONTENT_BYTES = 128 * 1024
MAX_FILES = 32
MAX_FILE_BYTES = 256 * 1024
MAX_FILES_BYTES = 1024 * 1024
MAX_PATH_DEPTH = 4
_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")

Severity = Literal["error", "warning", "info"]
_FENCE = "---"


@dataclass(frozen=True)
class Finding:
    """One thing a check found: ``line`` in SKILL.md (None: the skill as a whole), ``rule`` a
    stable id (``name-format``, ``injection-phrase``...)."""

    severity: Severity
    line: int | None
    rule: str
    message: str


@dataclass(frozen=True)
class ParsedSkill:
    """SKILL.md taken apart; ``body_line`` is the line of SKILL.md the body starts on."""

    content: str
    frontmatter: Mapping[str, Any]
    body: str
    body_line: int
    findings: tuple[Finding, ...]
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]


def parse_skill(content: str) -> ParsedSkill:
    """SKILL.md's frontmatter and body, with what is wrong with them as findings."""
    size = len(content.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        message = f"SKILL.md is {size} bytes; at most {MAX_CONTENT_BYTES} are stored"
        return _broken(content, Finding("error", None, "content-size", message))
    lines = content.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].rstrip() != _FENCE:
        message = "SKILL.md must start with a '---' line, then name and description, then '---'"
        return _broken(content, Finding("error", 1, "frontmatter-missing", message))
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() == _FENCE), None)
    if end is None:
        message = "the frontmatter opened on line 1 is never closed by a '---' line"
        return _broken(content, Finding("error", 1, "frontmatter-unclosed", message))
    body = "".join(lines[end + 1 :])
    yaml_text = "".join(lines[1:end])
    if (alias := _first_alias(yaml_text)) is not None:
        return _broken(content, alias, body, end + 2)
    try:
        document = yamlio.loads(yaml_text, SKILL_FILE)
    except yamlio.YamlSyntaxError as exc:
        line = exc.problem.line + 1 if exc.problem.line is not None else 1
        finding = Finding("error", line, "frontmatter-yaml", exc.problem.message)
        return _broken(content, finding, body, end + 2)
    except ValueError as exc:  # a value Python refuses to build: 13th month, 5,000 digits
        reason = str(exc).split(":")[0]
        message = f"a value cannot be read ({reason}); quote it to keep it as text"
        return _broken(content, Finding("error", 2, "frontmatter-yaml", message), body, end + 2)
    if not isinstance(document, Mapping):
        message = "the frontmatter must be keys and values (name, description, ...)"
        finding = Finding("error", 2, "frontmatter-format", message)
        return _broken(content, finding, body, end + 2)
    checks = _Frontmatter(document)
    return ParsedSkill(
        content=content,
        frontmatter=document,
        body=body,
        body_line=end + 2,
        findings=tuple(checks.findings),
        name=checks.name,
        description=checks.description,
        tags=checks.tags,
    )


def to_document(parsed: ParsedSkill, files: Mapping[str, str]) -> SkillDocument:
    """What the store keeps of a skill without errors."""
    if parsed.errors or parsed.name is None or parsed.description is None:
        raise ValueError("a skill with errors cannot be stored")
    return SkillDocument(
        name=parsed.name,
        description=parsed.description,
        content=parsed.content,
        tags=parsed.tags,
        files=dict(files),
    )


def file_problems(files: Mapping[str, str]) -> list[str]:
    """What is wrong with a skill's extra files, each naming the path; none when all is well."""
    if len(files) > MAX_FILES:
        return [f"{len(files)} files; a skill keeps at most {MAX_FILES} besides SKILL.md"]
    problems = [problem for path in files if (problem := path_problem(path)) is not None]
    total = 0
    for path, text in files.items():
        size = len(text.encode("utf-8"))
        total += size
        if size > MAX_FILE_BYTES:
            problems.append(f"'{path}' is {size} bytes; at most {MAX_FILE_BYTES} a file")
    if total > MAX_FILES_BYTES:
        problems.append(f"the files hold {total} bytes together; at most {MAX_FILES_BYTES}")
    return problems


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a skill's file, or None: relative, '/'-separated plain segments."""
    segments = path.split("/")
    if path == SKILL_FILE:
        return f"'{path}': SKILL.md is the skill itself (the content), not an extra file"
    if len(segments) > MAX_PATH_DEPTH:
        return f"'{path}' is {len(segments)} folders deep; at most {MAX_PATH_DEPTH}"
    if not all(_SEGMENT.match(segment) for segment in segments):
        return (
            f"'{path}' is not a relative path of plain names (letters, digits, '.', '_', '-';"
            " no leading '.' or '/', no '..', no empty part)"
        )
    return None


def _first_alias(yaml_text: str) -> Finding | None:
    """The first anchor or alias of the frontmatter as a finding, or None. Read from the
    parser's events, which never expand an alias, so this is linear in the text; a syntax
    error is left to ``yamlio.loads``, which names it."""
    try:
        for event in YAML(typ="rt").parse(yaml_text):
            if isinstance(event, NodeEvent) and event.anchor is not None:
                sign = "*" if isinstance(event, AliasEvent) else "&"
                # The YAML starts on SKILL.md's second line; marks count from 0.
                line = event.start_mark.line + 2
                message = (
                    f"YAML anchors and aliases ({sign}{event.anchor}) are not allowed in the"
                    " frontmatter: write each value out"
                )
                return Finding("error", line, "frontmatter-alias", message)
    except YAMLError:
        return None
    return None


def _broken(content: str, finding: Finding, body: str = "", body_line: int = 1) -> ParsedSkill:
    return ParsedSkill(content, {}, body or content, body_line, (finding,))


class _Frontmatter:
    """The frontmatter's rules, each adding findings; the valid values are kept."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.findings: list[Finding] = []
        self.name = self._name()
        self.description = self._description()
        self._optional_fields()
        self.tags = self._tags()

    def _line(self, *keys: str | int) -> int | None:
        where = yamlio.position(self.document, keys)
        # The YAML starts on SKILL.md's second line, after the opening '---'.
        return where[0] + 1 if where else 2

    def _add(self, severity: Severity, rule: str, message: str, *keys: str | int) -> None:
        self.findings.append(Finding(severity, self._line(*keys), rule, message))

    def _name(self) -> str | None:
        value = self.document.get("name")
        if value is None:
            self._add("error", "name-missing", "the frontmatter has no 'name' (required)")
            return None
        if not isinstance(value, str) or not NAME.match(value):
            message = f"name {_shown(value)} must be {NAME_RULE}"
            self._add("error", "name-format", message, "name")
            return None
        return str(value)

    def _description(self) -> str | None:
        value = self.document.get("description")
        if value is None:
            message = "the frontmatter has no 'description' (required): what the skill does"
            self._add("error", "description-missing", message + " and when to use it")
            return None
        if not isinstance(value, str) or not value.strip():
            message = "description must be non-empty text: what the skill does and when to use it"
            self._add("error", "description-empty", message, "description")
            return None
        if len(value) > MAX_DESCRIPTION:
            message = f"description is {len(value)} characters; at most {MAX_DESCRIPTION}"
            self._add("error", "description-length", message, "description")
            return None
        if len(value.strip()) < 40:
            message = (
                "description is short: say what the skill does and when to use it, with the"
                " words a task would use (agents choose skills by their description)"
            )
            self._add("info", "description-short", message, "description")
        return str(value)

    def _optional_fields(self) -> None:
        compatibility = self.document.get("compatibility")
        if compatibility is not None and (
            not isinstance(compatibility, str) or not 1 <= len(compatibility) <= MAX_COMPATIBILITY
        ):
            message = f"compatibility must be text of 1-{MAX_COMPATIBILITY} characters"
            self._add("error", "compatibility-format", message, "compatibility")
        metadata = self.document.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            message = "metadata must map names to text values (quote numbers and dates)"
            self._add("error", "metadata-format", message, "metadata")
        tools = self.document.get("allowed-tools")
        if tools is not None and not (
            isinstance(tools, str)
            or (isinstance(tools, list) and all(isinstance(t, str) for t in tools))
        ):
            message = "allowed-tools must be a space-separated string or a list of strings"
            self._add("error", "allowed-tools-format", message, "allowed-tools")
        for key in self.document:
            if key not in SPEC_FIELDS:
                message = (
                    f"'{key}' is not a field of the Agent Skills specification"
                    f" ({', '.join(SPEC_FIELDS)}); clients other than the one it was written"
                    " for ignore it"
                )
                self._add("warning", "unknown-field", message, str(key))

    def _tags(self) -> tuple[str, ...]:
        metadata = self.document.get("metadata")
        raw = metadata.get("tags") if isinstance(metadata, Mapping) else None
        if not isinstance(raw, str):
            return ()
        tags = [tag for tag in re.split(r"[,\s]+", raw) if tag]
        wrong = [tag for tag in tags if not TAG.match(tag)]
        if wrong:
            message = f"metadata.tags: {', '.join(map(repr, wrong))} must each be {TAG_RULE}"
            self._add("error", "tags-format", message, "metadata", "tags")
            return ()
        if len(set(tags)) > MAX_TAGS:
            message = f"metadata.tags has {len(set(tags))} tags; at most {MAX_TAGS}"
            self._add("error", "tags-format", message, "metadata", "tags")
            return ()
        return tuple(sorted(set(tags)))


_KINDS = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (Mapping, "a mapping"))


def _shown(value: Any) -> str:
    """A value for a message, bounded whatever it is: a string's first characters, else only
    its kind. Never ``repr`` of a container: its size is not bounded by SKILL.md's."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
    if value is None:
        return "(empty)"
    kind = next((kind for cls, kind in _KINDS if isinstance(value, cls)), None)
    if kind is None:
        kind = "a list" if isinstance(value, list) else f"a {type(value).__name__}"
    return f"({kind})"
