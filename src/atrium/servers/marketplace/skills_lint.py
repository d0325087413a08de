"""``analyze_skill``'s rules beyond the format (``skills_format``): size, prompt injection, and
the tools and secrets a skill mentions. Each rule gives ``Finding``s with a line of SKILL.md.

* Size: the body should stay under ``TOKEN_BUDGET`` tokens and ``LINE_BUDGET`` lines (the
  specification's "progressive disclosure": the whole body is loaded when a skill is used).
  Tokens are estimated, not counted: no tokenizer ships with Atrium and each model family has
  its own, so the estimate is ``ceil(characters / 4)``, the usual rule of thumb for English
  text with current BPE tokenizers (code and other languages run higher).
* Prompt injection: a skill is text a model obeys, so text that tries to take over the model
  is what a reviewer most needs pointed out: phrases that override earlier instructions or hide
  things from the user; HTML comments (hidden when the Markdown is rendered, read by a model)
  that give instructions; invisible characters (Unicode format characters: zero-width spaces
  and joiners, bidirectional overrides, tag characters) that hide or reorder text; and long
  base64 blobs, which a reviewer cannot read and which may decode to instructions.
* Tools: ``mcp__<server>__<tool>`` anywhere, checked against the registry: a ``<server>`` that
  is not an enabled hosted server is a warning. Whether ``<tool>`` exists on a server that is
  hosted is not checked: only the gateway knows which tools a caller may see, and listing them
  would take a token for the caller, which a backend must never mint (ARCHITECTURE.md, "Trust
  between the gateway and the backends"). One ``info`` finding says so.
* Secrets: ``$secret:NAME`` and ``{$secret: NAME}`` references, checked against the secrets
  stored for the caller, and for an admin also the project's (``store.secrets``): whether a
  project secret exists is for admins to know.

Everything here is linear in SKILL.md, which the callers bound (``MAX_CONTENT_BYTES``) before
linting: the tools run the linter in a worker thread, and the event loop must not wait on it.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from atrium.servers.marketplace.skills_format import Finding, ParsedSkill, parse_skill

TOKEN_BUDGET = 5000
LINE_BUDGET = 500
CHARS_PER_TOKEN = 4
TOKEN_ESTIMATE = "ceil(characters / 4): about four characters per token for English text"

_PHRASES = [
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\b(?:ignore|disregard|forget|override|skip)\s+(?:all\s+|any\s+|the\s+|your\s+|of\s+)*"
        r"(?:previous|prior|above|earlier|preceding|former|system|original|other)\s+"
        r"(?:instructions?|prompts?|rules|directions|messages|guidelines|context)",
        r"\bforget\s+(?:everything|all)\s+(?:you|that|above|before)",
        r"\b(?:reveal|print|show|repeat|output|leak)\s+(?:me\s+)?(?:your|the)\s+"
        r"(?:system\s+prompt|hidden\s+instructions|instructions\s+above|api\s+keys?)",
        r"\byou\s+are\s+now\s+(?:in\s+)?(?:dan\b|developer\s+mode|jailbroken|unrestricted)",
        r"\b(?:do\s+not|don't|never)\s+(?:tell|inform|let|show)\s+the\s+user",
        r"\bwithout\s+(?:telling|informing|asking|alerting)\s+the\s+user",
        r"<\|?\s*/?\s*(?:im_start|im_end|system)\s*\|?>",
        r"\bnew\s+(?:system\s+)?instructions\s*:",
    )
]
_IMPERATIVE = re.compile(
    r"\b(?:you|must|always|never|ignore|instead|do not|don't|execute|run|send|call|tell|"
    r"reply|respond|pretend|act as)\b",
    re.IGNORECASE,
)
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{60,}={0,2}(?![A-Za-z0-9+/=_-])")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_MCP_TOOL = re.compile(r"\bmcp__([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)__([A-Za-z0-9_.-]*[A-Za-z0-9_])")
_SECRET = re.compile(
    r"\$secret\s*:\s*([A-Za-z_][A-Za-z0-9_.-]*)|\"\$secret\"\s*:\s*\"([A-Za-z_][A-Za-z0-9_.-]*)\""
)


@dataclass(frozen=True)
class ToolMention:
    """A tool named in SKILL.md as ``mcp__<server>__<tool>``."""

    server: str
    tool: str
    line: int


@dataclass(frozen=True)
class SecretMention:
    name: str
    line: int


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def size_findings(parsed: ParsedSkill) -> list[Finding]:
    findings: list[Finding] = []
    if not parsed.body.strip() and parsed.frontmatter:
        message = "the body is empty: a skill's instructions go below the frontmatter"
        findings.append(Finding("warning", parsed.body_line, "body-empty", message))
    tokens = estimate_tokens(parsed.body)
    if tokens > TOKEN_BUDGET:
        message = (
            f"the body is about {tokens} tokens ({TOKEN_ESTIMATE}); keep it under"
            f" {TOKEN_BUDGET} and move reference material to files the body links"
        )
        findings.append(Finding("warning", None, "body-tokens", message))
    lines = len(parsed.body.splitlines())
    if lines > LINE_BUDGET:
        message = f"the body is {lines} lines; keep SKILL.md under {LINE_BUDGET} lines"
        findings.append(Finding("warning", None, "body-lines", message))
    return findings


def injection_findings(content: str) -> list[Finding]:
    """Text that looks like it tries to take over the model that reads the skill."""
    findings: list[Finding] = []
    for number, line in enumerate(content.splitlines(), start=1):
        findings.extend(_invisible(line, number, first=number == 1))
        if (phrase := _phrase(line)) is not None:
            message = f"looks like prompt injection: '{phrase}'"
            findings.append(Finding("error", number, "injection-phrase", message))
        findings.extend(_blobs(line, number))
    findings.extend(_comments(content))
    return sorted(findings, key=lambda f: (f.line or 0, f.rule))


def _normal(text: str) -> str:
    """``text`` as a model reads it: compatibility forms folded, invisible characters gone."""
    folded = unicodedata.normalize("NFKC", text)
    visible = "".join(c for c in folded if unicodedata.category(c) != "Cf")
    return re.sub(r"\s+", " ", visible)


def _phrase(text: str) -> str | None:
    normal = _normal(text)
    for pattern in _PHRASES:
        if found := pattern.search(normal):
            return found.group(0)
    return None


def _invisible(line: str, number: int, *, first: bool) -> Iterator[Finding]:
    hidden = [
        c
        for index, c in enumerate(line)
        if unicodedata.category(c) == "Cf" and not (first and index == 0 and c == "\ufeff")
    ]
    if hidden:
        codes = ", ".join(sorted({f"U+{ord(c):04X}" for c in hidden}))
        message = (
            f"{len(hidden)} invisible character(s) ({codes}): they hide or reorder text a"
            " reviewer sees differently from the model"
        )
        yield Finding("error", number, "invisible-characters", message)


def _blobs(line: str, number: int) -> Iterator[Finding]:
    urls = [match.span() for match in _URL.finditer(line)]
    for match in _BASE64.finditer(line):
        blob = match.group(0)
        if any(start <= match.start() < end for start, end in urls):
            continue
        if not (re.search("[a-z]", blob) and re.search("[A-Z]", blob)):
            continue  # hex digests and lowercase words joined by '-' are not base64 data
        decoded = _decoded(blob)
        if decoded is None:
            continue
        text = _as_text(decoded)
        if text is not None and (phrase := _phrase(text)) is not None:
            message = f"a base64 blob decodes to prompt injection: '{phrase}'"
            yield Finding("error", number, "injection-base64", message)
        elif text is not None:
            message = f"a base64 blob ({len(blob)} characters) decodes to text: {text[:60]!r}"
            yield Finding("warning", number, "base64-blob", message)
        else:
            message = (
                f"a base64 blob of {len(decoded)} bytes: a reviewer cannot read it; keep data"
                " in the skill's files"
            )
            yield Finding("warning", number, "base64-blob", message)


def _decoded(blob: str) -> bytes | None:
    padded = blob + "=" * (-len(blob) % 4)
    try:
        if "-" in blob or "_" in blob:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _as_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c.isspace() for c in text)
    return text if text and printable / len(text) > 0.95 else None


def _comments(content: str) -> Iterator[Finding]:
    """The HTML comments' findings, in one pass: each ``<!--`` is matched with the next
    ``-->`` and the search goes on after it (a regex's lazy ``.*?`` tries every unclosed
    ``<!--`` to the end: quadratic), and lines are counted as the scan moves on."""
    line, counted, start = 1, 0, content.find("<!--")
    while start != -1:
        close = content.find("-->", start + 4)
        if close == -1:
            return  # never closed: not a comment, and no later '<!--' can close either
        line += content.count("\n", counted, start)
        counted = start
        finding = _comment_finding(content[start + 4 : close], line)
        if finding is not None:
            yield finding
        start = content.find("<!--", close + 3)


def _comment_finding(inside: str, line: int) -> Finding | None:
    if (phrase := _phrase(inside)) is not None:
        message = f"a hidden HTML comment holds prompt injection: '{phrase}'"
        return Finding("error", line, "injection-hidden-comment", message)
    if _IMPERATIVE.search(_normal(inside)):
        message = (
            "a hidden HTML comment gives instructions: rendered Markdown hides it from"
            " readers, but a model reads it; put instructions in the visible text"
        )
        return Finding("warning", line, "hidden-comment", message)
    return None


def tool_mentions(content: str) -> list[ToolMention]:
    """The ``mcp__<server>__<tool>`` names SKILL.md mentions, in order, each once (its first
    line)."""
    found: dict[tuple[str, str], ToolMention] = {}
    for number, line in enumerate(content.splitlines(), start=1):
        for match in _MCP_TOOL.finditer(line):
            key = (match.group(1), match.group(2))
            found.setdefault(key, ToolMention(key[0], key[1], number))
    return list(found.values())


def tool_findings(mentions: Iterable[ToolMention], servers: frozenset[str]) -> list[Finding]:
    """A warning for each tool of a server that is not among ``servers`` (the enabled hosted
    ones), and one ``info`` that the tools of those that are were not checked."""
    findings: list[Finding] = []
    unchecked: list[ToolMention] = []
    for mention in mentions:
        if mention.server in servers:
            unchecked.append(mention)
            continue
        known = ", ".join(sorted(servers)) or "none"
        message = (
            f"mcp__{mention.server}__{mention.tool}: no hosted server '{mention.server}'"
            f" (enabled: {known})"
        )
        findings.append(Finding("warning", mention.line, "tool-unknown", message))
    if unchecked:
        message = (
            "tool names on hosted servers are not checked here (the gateway decides which"
            f" tools each caller sees): {', '.join(sorted({m.tool for m in unchecked}))}"
        )
        findings.append(Finding("info", unchecked[0].line, "tool-unchecked", message))
    return findings


def secret_mentions(content: str) -> list[SecretMention]:
    found: dict[str, SecretMention] = {}
    for number, line in enumerate(content.splitlines(), start=1):
        for match in _SECRET.finditer(line):
            name = match.group(1) or match.group(2)
            found.setdefault(name, SecretMention(name, number))
    return list(found.values())


def secret_findings(
    mentions: list[SecretMention], known: frozenset[str], *, project: bool
) -> list[Finding]:
    """A finding for each secret named that is not among ``known``: the caller's own, and
    with ``project`` the project's too."""
    where = (
        "among yours or the project's"
        if project
        else "among yours (the project's are checked for admins only)"
    )
    return [
        Finding(
            "warning",
            mention.line,
            "secret-unknown",
            f"secret '{mention.name}' is not stored {where}; get_secrets lists them",
        )
        for mention in mentions
        if mention.name not in known
    ]


def analyze(
    content: str, *, servers: frozenset[str], secrets: frozenset[str], project: bool
) -> tuple[ParsedSkill, list[Finding]]:
    """Every rule on ``content`` (at most ``MAX_CONTENT_BYTES``): the format's, size, prompt
    injection, tools against the hosted ``servers``, secrets against ``secrets`` (with
    ``project``, the project's are among them). Blocking: run it in a worker thread."""
    parsed = parse_skill(content)
    findings = [*parsed.findings, *size_findings(parsed), *injection_findings(content)]
    findings += tool_findings(tool_mentions(content), servers)
    findings += secret_findings(secret_mentions(content), secrets, project=project)
    return parsed, findings
