"""The import layering of ARCHITECTURE.md, checked on the source (``ast``, nothing imported).

From the top: ``cli`` → ``host`` → the packages that do the work → ``registry``, ``store`` →
the base modules (``settings``, ``errors`` ...). A module imports only from its own layer or
below, never upwards; within a layer, some pairs never meet (``supervisor`` ⇄ ``gateway``,
``client`` → ``supervisor``/``gateway``, ``servers`` → ``gateway``/``supervisor``, ``store`` →
``registry``). Every module stays under 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "atrium"

LAYERS: dict[str, int] = {
    "cli": 0,
    "__main__": 0,
    "host": 1,
    **dict.fromkeys(
        ["gateway", "auth", "supervisor", "bridge", "client", "ai", "web", "servers", "scaffold"],
        2,
    ),
    "registry": 3,
    "store": 3,
    **dict.fromkeys(
        ["settings", "errors", "yamlio", "runstate", "serving", "redaction", "__about__"], 4
    ),
    "secretbox": 4,
    "deathsig": 4,
}
NEVER = {
    ("supervisor", "gateway"),
    ("gateway", "supervisor"),
    ("client", "supervisor"),
    ("client", "gateway"),
    ("servers", "gateway"),
    ("servers", "supervisor"),
    ("servers", "host"),
    ("store", "registry"),
    ("store", "auth"),
}
MAX_LINES = 400


def _package(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, first segment under atrium)`` of every absolute ``atrium.*`` import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "atrium":
                names = [f"atrium.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "atrium" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def layering_faults(root: Path = ROOT) -> list[str]:
    faults = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "__init__.py":
            continue  # the public API for server authors re-exports the toolkit
        here = _package(path, root)
        if here not in LAYERS:
            faults.append(f"{path.relative_to(root)}: package {here!r} has no layer")
            continue
        for line, there in _imports(path):
            if there == here:
                continue
            where = f"{path.relative_to(root)}:{line} imports atrium.{there}"
            if there not in LAYERS:
                faults.append(f"{where}, which has no layer")
            elif LAYERS[there] < LAYERS[here]:
                faults.append(f"{where} (upwards: {here} is below {there})")
            elif (here, there) in NEVER:
                faults.append(f"{where} ({here} -> {there} is never)")
    return faults


def test_no_module_imports_against_the_layering() -> None:
    assert layering_faults() == []


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in ROOT.rglob("*.py")
        if "migrations" not in path.parts
        and (lines := path.read_text(encoding="utf-8").count("\n")) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize(
    ("package", "source", "fault"),
    [
        ("gateway", "from atrium.supervisor.state import x\n", "gateway -> supervisor is never"),
        ("store", "import atrium.cli.main\n", "upwards: store is below cli"),
        ("settings", "from atrium import registry\n", "upwards: settings is below registry"),
        ("client", "from atrium.nowhere import x\n", "which has no layer"),
    ],
)
def test_the_check_finds_a_forbidden_import(
    tmp_path: Path, package: str, source: str, fault: str
) -> None:
    (tmp_path / package).mkdir()
    (tmp_path / package / "module.py").write_text(source)

    (found,) = layering_faults(tmp_path)

    assert fault in found


def test_the_check_allows_a_downward_import(tmp_path: Path) -> None:
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "module.py").write_text(
        "from atrium.registry.schema import x\nfrom atrium.settings import Settings\n"
    )

    assert layering_faults(tmp_path) == []
