"""Every third-party package that ``src/`` imports is declared in pyproject.toml, so the wheel
works without whatever else happens to be installed next to it (issue 11 item A10)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> set[str]:
    """The required dependencies and those of the optional extras users install (`atrium[ai]`);
    `dev` is for working on Atrium, so a package only it names is not declared for `src/`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    specs = [*project["dependencies"]]
    specs += [spec for extra, listed in extras.items() if extra != "dev" for spec in listed]
    return {_canonical(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0]) for spec in specs}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name.split(".")[0] for name in names}


def test_every_third_party_import_of_src_is_a_declared_dependency() -> None:
    declared = _declared()
    distributions = packages_distributions()
    undeclared = set()
    for path in (ROOT / "src").rglob("*.py"):
        for module in _imported_modules(path) - set(sys.stdlib_module_names) - {"atrium"}:
            owners = {_canonical(name) for name in distributions.get(module, [module])}
            if not owners & declared:
                undeclared.add(f"{module} ({path.relative_to(ROOT)})")
    assert not undeclared, sorted(undeclared)
