"""Reading what one run of the MCP conformance suite left behind, and summing it up.

``conformance server --requirements REV -o DIR`` writes one folder per scenario,
``DIR/server-<scenario>-<ISO time>/checks.json``: a list of checks, each with a ``status`` of
SUCCESS, FAILURE, WARNING, INFO or SKIPPED. A scenario fails when one of its checks is a
FAILURE; WARNING (a SHOULD not met), INFO and SKIPPED never fail it. The package's
``requirements/REV.yaml`` names the scenarios of a revision: ``server`` the scored ones,
``not_scored`` those the suite runs for visibility only (extensions, pending, added after the
release). Atrium holds itself to both: a run passes only when every scenario of either list
passed, and a scenario without results (it crashed, or was not run) counts as failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$")


@dataclass(frozen=True)
class Scenario:
    name: str
    scored: bool
    checks: tuple[dict[str, Any], ...] | None  # None: no results were written

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [check for check in self.checks or () if check.get("status") == "FAILURE"]

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [check for check in self.checks or () if check.get("status") == "WARNING"]

    @property
    def passed(self) -> bool:
        return self.checks is not None and not self.failures


@dataclass(frozen=True)
class RunReport:
    revision: str
    scenarios: tuple[Scenario, ...]
    exit_code: int
    seconds: float

    @property
    def scored(self) -> list[Scenario]:
        return [s for s in self.scenarios if s.scored]

    @property
    def not_scored(self) -> list[Scenario]:
        return [s for s in self.scenarios if not s.scored]

    @property
    def ok(self) -> bool:
        """The suite's own verdict (scored scenarios) is a pass, and every scenario passed."""
        return self.exit_code == 0 and all(s.passed for s in self.scenarios)


def read_run(
    suite: Path, revision: str, results: Path, *, exit_code: int, seconds: float
) -> RunReport:
    """The report of the run of ``revision`` whose results are under ``results``."""
    scored, not_scored = _requirements(suite, revision)
    found = _checks_by_scenario(results)
    scenarios = [Scenario(name, True, found.get(name)) for name in scored]
    scenarios += [Scenario(name, False, found.get(name)) for name in not_scored]
    return RunReport(revision, tuple(scenarios), exit_code, seconds)


def describe(report: RunReport) -> list[str]:
    """Lines for the terminal: the counts, then every failure (scored or not) with its checks,
    then the warnings of scored scenarios."""
    scored, extra = report.scored, report.not_scored
    lines = [
        f"{report.revision}: {'PASS' if report.ok else 'FAIL'}"
        f" - scored {_count(scored)}, not scored {_count(extra)}"
        f" ({report.seconds:.1f} s, suite exit {report.exit_code})"
    ]
    for scenario in report.scenarios:
        label = scenario.name if scenario.scored else f"{scenario.name} (not scored)"
        if scenario.checks is None:
            lines.append(f"  FAILED {label}: no results (crashed or not run)")
        for check in scenario.failures:
            lines.append(f"  FAILED {label} [{check.get('id')}] {_error(check)}")
    for scenario in scored:
        for check in scenario.warnings:
            lines.append(f"  warning {scenario.name} [{check.get('id')}] {_error(check)}")
    return lines


def _count(scenarios: list[Scenario]) -> str:
    passed = sum(s.passed for s in scenarios)
    return f"{passed} passed / {len(scenarios) - passed} failed"


def _error(check: dict[str, Any]) -> str:
    return str(check.get("errorMessage") or check.get("description") or "")[:300]


def _requirements(suite: Path, revision: str) -> tuple[list[str], list[str]]:
    path = suite / "requirements" / f"{revision}.yaml"
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    scored = [str(name) for name in data.get("server") or ()]
    not_scored = [
        str(entry["scenario"]) for entry in data.get("not_scored") or () if entry["leg"] == "server"
    ]
    return scored, not_scored


def _checks_by_scenario(results: Path) -> dict[str, tuple[dict[str, Any], ...] | None]:
    found: dict[str, tuple[dict[str, Any], ...] | None] = {}
    for folder in sorted(results.iterdir()) if results.is_dir() else ():
        match = _RESULT_DIR.match(folder.name)
        if not match:
            continue
        checks_file = folder / "checks.json"
        checks = json.loads(checks_file.read_text()) if checks_file.is_file() else None
        found[match["scenario"]] = tuple(checks) if checks is not None else None
    return found
