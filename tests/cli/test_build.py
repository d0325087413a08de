"""``atrium build mcp`` on real extension folders: real pip installs, real build commands.

A Python extension is installed into "Atrium's environment", which is whatever interpreter
runs ``atrium``. So that no test changes the project's own ``.venv`` (other tests run beside
it), those builds run ``atrium`` with the interpreter of a throwaway virtualenv layered over
this one (``layered_python``): it imports Atrium and pip from here, and installs into itself.
The extensions build offline: their ``pyproject.toml`` names a build backend kept in the
extension itself (PEP 517 ``backend-path``), so pip fetches nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.helpers import run_atrium
from tests.polling import wait_until

# A PEP 517 backend of a few lines: the wheel of the modules under src/ and the project's
# console scripts. Kept in the extension, so that building needs nothing from an index.
TINY_BACKEND = '''\
"""A PEP 517 build backend: the wheel of this project's modules under src/."""

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    name, version = project["name"].replace("-", "_"), project["version"]
    info = f"{name}-{version}.dist-info"
    requires = "".join(f"Requires-Dist: {r}\\n" for r in project.get("dependencies", []))
    scripts = "".join(f"{k} = {v}\\n" for k, v in project.get("scripts", {}).items())
    files = {p.name: p.read_bytes() for p in Path("src").glob("*.py")}
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\\nName: {project['name']}\\nVersion: {version}\\n{requires}"
    ).encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{info}/entry_points.txt"] = f"[console_scripts]\\n{scripts}".encode()
    record = [f"{n},sha256={_digest(d)},{len(d)}" for n, d in files.items()]
    files[f"{info}/RECORD"] = "\\n".join([*record, f"{info}/RECORD,,", ""]).encode()
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / wheel, "w") as archive:
        for n, d in files.items():
            archive.writestr(n, d)
    return wheel


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
'''


def layered_python(folder: Path) -> Path:
    """A new virtualenv in ``folder`` that sees this environment's packages (Atrium, pip) and
    installs into itself; its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    [site] = (folder / "lib").glob("python*/site-packages")
    here = sysconfig.get_path("purelib")
    # A .pth line starting with "import" runs: addsitedir also reads this environment's own
    # .pth files (Atrium's editable install, coverage's subprocess hook).
    (site / "_layered_over.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    return folder / "bin" / "python"


def write_python_extension(project: Path, name: str, binary: str, module: str, code: str) -> Path:
    """``extensions/mcp/<name>/``: manifest, pyproject (console script ``binary`` →
    ``module:main``), the module and the in-tree build backend; the folder."""
    folder = project / "extensions/mcp" / name
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "backend").mkdir(exist_ok=True)
    (folder / "manifest.yaml").write_text(
        f"extension:\n  type: mcp\n  name: {name}\n  binary: {binary}\n"
        f"  description: {name} server\n  build_type: python\n"
    )
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = []
            build-backend = "tiny_backend"
            backend-path = ["backend"]

            [project]
            name = "{name}-server"
            version = "0.1.0"
            dependencies = ["atrium"]

            [project.scripts]
            {binary} = "{module}:main"
            """
        )
    )
    (folder / "backend/tiny_backend.py").write_text(TINY_BACKEND)
    (folder / "src" / f"{module}.py").write_text(code)
    return folder


def write_external_extension(project: Path, name: str, binary: str, command: list[str]) -> Path:
    folder = project / "extensions/mcp" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.yaml").write_text(
        f"extension:\n  type: mcp\n  name: {name}\n  binary: {binary}\n"
        f"  build_type: external\n  build_command: {json.dumps(command)}\n"
    )
    return folder


def atrium_with(python: Path, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``atrium`` run by ``python``, with a PATH that does not hold ``python``'s folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != python.parent
    )
    argv = [str(python), "-m", "atrium", "--project", str(project), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)


def greeting(text: str) -> str:
    return f"def main() -> None:\n    print({text!r})\n"


def test_a_python_extension_is_installed_into_atriums_environment_and_rebuilt(
    tmp_path: Path,
) -> None:
    python = layered_python(tmp_path / "env")
    project = tmp_path / "project"
    folder = write_python_extension(project, "greeter", "greeter-mcp", "greeter", greeting("v1"))
    listed = ("plugins", "mcp", "list-packages", "--json")
    before = atrium_with(python, project, *listed)

    first = atrium_with(python, project, "build", "mcp", "greeter")
    (folder / "src/greeter.py").write_text(greeting("v2"))
    second = atrium_with(python, project, "build", "mcp")

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    binary = python.parent / "greeter-mcp"
    assert f"built greeter: greeter-mcp is {binary}" in " ".join(first.stdout.split())
    assert subprocess.run([binary], capture_output=True, text=True).stdout == "v2\n"
    after = atrium_with(python, project, *listed)
    assert [row["installed"] for row in json.loads(before.stdout)] == [False]
    assert [row["installed"] for row in json.loads(after.stdout)] == [True]
    # Built into that Atrium's environment only: this one has no such binary.
    elsewhere = run_atrium("--project", str(project), *listed)
    assert [row["installed"] for row in json.loads(elsewhere.stdout)] == [False]
    assert not (Path(sys.executable).parent / "greeter-mcp").exists()


def test_a_failed_pip_install_names_its_exit_code_and_shows_its_last_lines(
    tmp_path: Path,
) -> None:
    python = layered_python(tmp_path / "env")
    project = tmp_path / "project"
    folder = write_python_extension(project, "greeter", "greeter-mcp", "greeter", greeting("x"))
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"\n', ""))

    result = atrium_with(python, project, "build", "mcp", "greeter")

    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "failed with exit code 1; last lines of its output:" in message
    assert "KeyError: 'version'" in message  # the build backend's own error, from pip's output
    assert not (python.parent / "greeter-mcp").exists()


def test_an_external_build_runs_its_command_in_the_extension_folder_without_a_shell(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    make = (
        "import os, sys, json; from pathlib import Path;"
        "b = Path(sys.argv[1]) / 'weather-mcp'; b.write_text('#!/bin/sh\\n'); b.chmod(0o755);"
        "Path('built.json').write_text(json.dumps([os.getcwd(), sys.argv[2:]]))"
    )
    literal = ["$HOME; rm -rf /", "*", "`id`"]
    folder = write_external_extension(
        tmp_path, "weather", "weather-mcp", [sys.executable, "-c", make, str(bin_dir), *literal]
    )
    bin_dir.mkdir()

    result = run_atrium(
        "--project", str(tmp_path), "build", "mcp", "weather",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert json.loads((folder / "built.json").read_text()) == [str(folder), literal]
    assert "built weather" in result.stdout


def test_a_failed_external_build_names_its_exit_code_and_shows_its_last_lines(
    tmp_path: Path,
) -> None:
    fail = "import sys\nfor n in range(1, 31): print('line', n)\nsys.exit(3)"
    write_external_extension(tmp_path, "weather", "weather-mcp", [sys.executable, "-c", fail])

    result = run_atrium("--project", str(tmp_path), "build", "mcp", "weather")

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any("failed with exit code 3" in line for line in lines)
    shown = [line.split("|", 1)[1].strip() for line in lines if "|" in line]
    assert shown == [f"line {n}" for n in range(11, 31)]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["no-such-build-program-here"], "program 'no-such-build-program-here' not found"),
        ([sys.executable, "-c", "pass"], "'weather-mcp' was not found on PATH"),
    ],
)
def test_a_build_that_cannot_run_or_makes_no_binary_is_an_error(
    tmp_path: Path, command: list[str], expected: str
) -> None:
    write_external_extension(tmp_path, "weather", "weather-mcp", command)

    result = run_atrium("--project", str(tmp_path), "build", "mcp", "weather")

    assert result.exit_code == 1
    assert expected in " ".join(result.stderr.split())


def test_a_python_extension_without_a_pyproject_is_refused_before_pip_runs(
    tmp_path: Path,
) -> None:
    folder = write_python_extension(tmp_path, "greeter", "greeter-mcp", "greeter", greeting("x"))
    (folder / "pyproject.toml").unlink()

    result = run_atrium("--project", str(tmp_path), "build", "mcp", "greeter")

    assert result.exit_code == 1
    assert "needs a pyproject.toml in extensions/mcp/greeter/" in " ".join(result.stderr.split())


def test_an_unknown_extension_is_told_the_known_ones(tmp_path: Path) -> None:
    write_external_extension(tmp_path, "weather", "weather-mcp", ["true"])

    result = run_atrium("--project", str(tmp_path), "build", "mcp", "forecast")

    assert result.exit_code == 1
    assert "extension 'forecast' not found; known: weather" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("manifest", "located"),
    [
        (
            "extension:\n  type: mcp\n  name: weather\n  binary: w\n  build_type: external\n",
            "extensions/mcp/weather/manifest.yaml:5:3: extension.build_command",
        ),
        (
            "extension:\n  type: mcp\n  name: weather\n  binary: w\n  build_command: [make]\n",
            "extensions/mcp/weather/manifest.yaml:5:3: extension.build_command",
        ),
        (
            "extension:\n  type: mcp\n  name: weather\n  binary: w\n  build_type: rust\n",
            "extensions/mcp/weather/manifest.yaml:5:3: extension.build_type",
        ),
    ],
)
def test_a_bad_manifest_is_reported_with_its_file_line_and_key(
    tmp_path: Path, manifest: str, located: str
) -> None:
    folder = tmp_path / "extensions/mcp/weather"
    folder.mkdir(parents=True)
    (folder / "manifest.yaml").write_text(manifest)

    result = run_atrium("--project", str(tmp_path), "build", "mcp")

    assert result.exit_code == 2
    assert located in " ".join(result.stderr.split())


def test_building_every_extension_reports_each_and_fails_if_one_failed(tmp_path: Path) -> None:
    write_external_extension(tmp_path, "broken", "broken-mcp", [sys.executable, "-c", "1/0"])
    write_external_extension(tmp_path, "weather", "sh", [sys.executable, "-c", "pass"])

    result = run_atrium("--project", str(tmp_path), "build", "mcp")

    assert result.exit_code == 1
    assert "built weather: sh is" in result.stdout
    assert "failed extension 'broken'" in " ".join(result.stderr.split())
    assert "1 of 2 failed to build: broken" in " ".join(result.stderr.split())


def test_a_build_sees_only_the_allow_listed_environment_in_a_session_of_its_own(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dump = (
        "import os, sys, json; from pathlib import Path;"
        "b = Path(sys.argv[1]) / 'weather-mcp'; b.write_text('#!/bin/sh\\n'); b.chmod(0o755);"
        "Path('seen.json').write_text(json.dumps([dict(os.environ), os.getsid(0) == os.getpid()]))"
    )
    folder = write_external_extension(
        tmp_path, "weather", "weather-mcp", [sys.executable, "-c", dump, str(bin_dir)]
    )
    gateways = {
        "ATRIUM_SECRET_KEY": "$file:/run/keys/ring",
        "ATRIUM_DATABASE_URL": "postgresql://atrium:db-password@db/atrium",
        "OPENAI_API_KEY": "sk-provider-key",
        "GITHUB_TOKEN": "ghp_operator",
    }

    result = run_atrium(
        "--project", str(tmp_path), "build", "mcp", "weather",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LANG": "C.UTF-8",
             "PIP_INDEX_URL": "https://pypi.example/simple", **gateways},
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    environ, leads_its_session = json.loads((folder / "seen.json").read_text())
    assert not set(gateways) & set(environ)
    assert environ["PATH"].startswith(str(bin_dir))
    assert (environ["LANG"], environ["PIP_INDEX_URL"]) == ("C.UTF-8", "https://pypi.example/simple")
    assert leads_its_session is True


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_build_that_times_out_is_killed_with_every_process_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    hang = (
        "import subprocess, sys, time; from pathlib import Path;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
        f"Path({str(pid_file)!r}).write_text(str(child.pid)); time.sleep(120)"
    )
    write_external_extension(tmp_path, "weather", "weather-mcp", [sys.executable, "-c", hang])

    result = run_atrium(
        "--project", str(tmp_path), "build", "mcp", "weather", "--timeout", "1"
    )  # fmt: skip

    assert result.exit_code == 1
    assert "did not finish within 1 s" in " ".join(result.stderr.split())
    grandchild = int(pid_file.read_text())
    wait_until(lambda: not alive(grandchild), what="the build's own child to be killed")


@pytest.mark.parametrize("binary", ["atrium", "atrium-mcp-marketplace", "atrium-stdio-bridge"])
def test_an_extension_may_not_install_a_program_of_atriums_own(tmp_path: Path, binary: str) -> None:
    marker = tmp_path / "ran"
    build = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    write_external_extension(tmp_path, "evil", binary, build)

    result = run_atrium("--project", str(tmp_path), "build", "mcp", "evil")

    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert f"binary '{binary}' is one of Atrium's own programs" in said
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda text: text + 'atrium = "greeter:main"\n', "would install atrium"),
        (
            lambda text: text.replace('name = "greeter-server"', 'name = "Atrium"'),
            "names its package 'atrium'",
        ),
    ],
)
def test_a_python_extension_replacing_atriums_scripts_or_atrium_is_refused_before_pip(
    tmp_path: Path, change: Callable[[str], str], said: str
) -> None:
    python = layered_python(tmp_path / "env")  # were pip to run, it installs there only
    project = tmp_path / "project"
    folder = write_python_extension(project, "greeter", "greeter-mcp", "greeter", greeting("x"))
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(change(pyproject.read_text()))

    result = atrium_with(python, project, "build", "mcp", "greeter")

    assert result.returncode == 1
    assert said in " ".join(result.stderr.split())
    assert not (python.parent / "greeter-mcp").exists()
    assert not (python.parent / "atrium").exists()
