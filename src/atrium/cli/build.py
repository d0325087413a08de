"""``atrium build mcp [NAME]``: build and install the project's own MCP servers (seed 002,
"Building Servers") from ``extensions/mcp/<name>/manifest.yaml``, so that each one's ``binary``
is found where the supervisor looks for it: on PATH, then beside Atrium's interpreter.

``build_type`` says how:

* ``python``: ``pip install <folder>`` with Atrium's own interpreter (``sys.executable -m
  pip``), so the server's ``import atrium`` is this Atrium and its console script lands
  beside ``atrium``. Building again reinstalls it (pip always reinstalls a local folder).
* ``external``: the manifest's ``build_command`` (the program and its arguments), run in the
  extension's folder without a shell: its arguments are never parsed, expanded or globbed.
  It is the command's job to put ``binary`` on PATH.
* ``workspace``: built with Atrium itself (the built-in servers' console scripts come with its
  installation): nothing to build, only checked.

A build is done when its binary is found: one that succeeds without producing it is an error
that says so. A failed build names its exit code and shows the last lines of its output.
``atrium plugins mcp list-packages`` tells which binaries are found (``find_binary``).

A build runs third-party code, so it gets what the supervisor gives a server
(``atrium.supervisor.environment.allowed_environment``: PATH, HOME, locale, proxies...) and the
packaging tools' own settings (``VIRTUAL_ENV``, ``PIP_*``), never the operator's other
variables (provider keys, ``ATRIUM_SECRET_KEY``, the database URL). It runs in a session of
its own, and a build that times out is killed with every process it started. An extension
may not install a program of Atrium's own (``atrium``, ``atrium-mcp-marketplace``...): its
``binary``, or for ``python`` the ``[project.scripts]`` of its pyproject.toml, naming one is
refused before anything runs, since it would replace Atrium's (and a ``python`` package named
``atrium`` would replace Atrium itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from atrium.cli.context import CliState, state
from atrium.errors import AtriumError, NotFoundError, display_path
from atrium.scaffold import BUILTIN_SERVERS
from atrium.settings import Settings

if TYPE_CHECKING:  # the registry (pydantic's models) loads only when there is a build
    from atrium.registry.loader import Extension

app = typer.Typer(help="Build the project's own servers.", no_args_is_help=True)

TIMEOUT_S = 600.0
LAST_LINES = 20
_PYTHON_PROJECT_FILES = ("pyproject.toml", "setup.py")
ATRIUM_PROGRAMS = frozenset(
    {"atrium", "atrium-stdio-bridge", *(server.binary for server in BUILTIN_SERVERS)}
)
# What pip, uv and a virtualenv's tools read, beside the allow-list servers get.
_BUILD_ONLY = re.compile(r"^(VIRTUAL_ENV|PIP_[A-Z_]+)$")


class BuildError(AtriumError):
    """An extension was not built: its manifest asks for something impossible, its build
    failed, or it did not produce its binary."""


@dataclass(frozen=True)
class Built:
    name: str
    binary: str
    path: str


def find_binary(binary: str, settings: Settings) -> str | None:
    """Where the supervisor would find ``binary``: a path inside the project when it names a
    folder, else on PATH, then beside the running interpreter (an unactivated virtualenv)."""
    if "/" in binary:
        path = settings.project_dir / binary
        return str(path) if path.is_file() else None
    search = f"{settings.environ.get('PATH', '')}:{Path(sys.executable).parent}"
    return shutil.which(binary, path=search)


def build_extension(extension: Extension, settings: Settings, *, timeout_s: float) -> Built:
    """Build and install ``extension``; ``BuildError`` says why it could not be."""
    folder = settings.extensions_dir / extension.name
    shown = display_path(folder, settings.project_dir)
    environ = build_environment(settings.environ)
    if extension.build_type != "workspace":  # a workspace server is Atrium's own: only found
        _refuse_atrium_programs(extension, folder, shown)
    if extension.build_type == "python":
        if not any((folder / name).is_file() for name in _PYTHON_PROJECT_FILES):
            raise BuildError(
                f"extension '{extension.name}': build_type 'python' needs a pyproject.toml"
                f" in {shown}/ (a package whose [project.scripts] names {extension.binary})"
            )
        argv: Sequence[str] = (
            sys.executable,
            *("-m", "pip", "install", "--disable-pip-version-check", "--no-input"),
            str(folder.resolve()),
        )
        _run(extension, argv, folder, environ, timeout_s)
    elif extension.build_type == "external":
        _run(extension, extension.build_command, folder, environ, timeout_s)
    path = find_binary(extension.binary, settings)
    if path is None:
        raise BuildError(_missing(extension, shown))
    return Built(extension.name, extension.binary, path)


def build_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a build: the servers' allow-list and the packaging tools' settings."""
    from atrium.supervisor.environment import allowed_environment

    return allowed_environment(environ) | {k: v for k, v in environ.items() if _BUILD_ONLY.match(k)}


def _refuse_atrium_programs(extension: Extension, folder: Path, shown: str) -> None:
    """``BuildError`` if the build would install a program of Atrium's own, or Atrium."""
    said = f"extension '{extension.name}'"
    if extension.binary in ATRIUM_PROGRAMS:
        raise BuildError(
            f"{said}: binary '{extension.binary}' is one of Atrium's own programs, which a build"
            f" would replace; give the server a name of its own in {extension.source}"
        )
    if extension.build_type != "python" or not (folder / "pyproject.toml").is_file():
        return
    try:
        project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"{said}: cannot read {shown}/pyproject.toml: {exc}") from None
    table = project.get("project")
    table = table if isinstance(table, dict) else {}
    scripts = [
        name
        for key in ("scripts", "gui-scripts")
        if isinstance(table.get(key), dict)
        for name in table[key]
    ]
    taken = sorted(set(scripts) & ATRIUM_PROGRAMS)
    if taken:
        raise BuildError(
            f"{said}: {shown}/pyproject.toml [project.scripts] would install {', '.join(taken)},"
            " replacing Atrium's own; give its scripts names of their own"
        )
    if re.sub(r"[-_.]+", "-", str(table.get("name", ""))).lower() == "atrium":
        raise BuildError(
            f"{said}: {shown}/pyproject.toml names its package 'atrium', which pip would install"
            " over Atrium itself; give the package a name of its own"
        )


def _missing(extension: Extension, shown: str) -> str:
    where = f"extension '{extension.name}': '{extension.binary}' was not found on PATH"
    if extension.build_type == "python":
        return (
            f"{where} after pip installed {shown}/: its pyproject.toml must name it in"
            f' [project.scripts] ({extension.binary} = "module:function")'
        )
    if extension.build_type == "external":
        return f"{where} after its build_command succeeded: the command must install it there"
    return (
        f"{where}. build_type 'workspace' is for the servers that come with Atrium;"
        " set build_type: python (a Python package) or external (with build_command)"
        f" in {extension.source}"
    )


def _run(
    extension: Extension,
    argv: Sequence[str],
    folder: Path,
    environ: Mapping[str, str],
    timeout_s: float,
) -> None:
    """Run one build step in ``folder``, in a session of its own; its output is kept, and
    shown only when it fails. On timeout its whole process group is killed: a build's
    children (a compiler, a test server) must not outlive it."""
    step = f"extension '{extension.name}': `{' '.join(argv)}`"
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=folder,
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise BuildError(f"{step}: program '{argv[0]}' not found") from None
    except PermissionError:
        raise BuildError(f"{step}: program '{argv[0]}' is not executable") from None
    with process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise BuildError(
                f"{step} did not finish within {timeout_s:g} s; last lines of its output:\n"
                + _last_lines(_written(process))
            ) from None
        except BaseException:
            _kill_group(process)  # Ctrl-C: in a session of its own, the build did not get it
            raise
    if process.returncode != 0:
        raise BuildError(
            f"{step} failed with exit code {process.returncode}; last lines of its output:\n"
            + _last_lines(output)
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # The build leads its session and process group: its pid is the group's id. None of the
    # group may be left (ProcessLookupError: all of it ended meanwhile).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _written(process: subprocess.Popen[bytes]) -> bytes:
    """The output of a killed build; not waiting long on a process that left the group (a
    daemon in a session of its own) and still holds the pipe."""
    try:
        output, _ = process.communicate(timeout=5)
    except subprocess.TimeoutExpired as exc:
        return exc.output or b""
    return output


def _last_lines(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        output = output.decode("utf-8", errors="replace")
    lines = (output or "").rstrip().splitlines()[-LAST_LINES:]
    return "\n".join(f"  | {line}" for line in lines) or "  (no output)"


def _targets(cli: CliState, name: str | None) -> list[Extension]:
    from atrium.registry.loader import load_extensions

    extensions = load_extensions(cli.settings)
    if name is None:
        return list(extensions.values())
    if name not in extensions:
        raise NotFoundError("extension", name, list(extensions))
    return [extensions[name]]


@app.command("mcp")
def mcp(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            help="Extension (a folder of extensions/mcp/); without it, every extension.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds a build may take.", min=1)
    ] = TIMEOUT_S,
) -> None:
    """Build and install the servers under extensions/mcp/ from their manifest.yaml."""
    cli = state(ctx)
    targets = _targets(cli, name)
    if not targets:
        shown = display_path(cli.settings.extensions_dir, cli.settings.project_dir)
        cli.out.print(f"No extensions to build: no {shown}/<name>/manifest.yaml.")
        return
    failed: list[str] = []
    for extension in targets:
        cli.out.print(f"building {extension.name} ({extension.build_type})…", highlight=False)
        try:
            built = build_extension(extension, cli.settings, timeout_s=timeout)
        except BuildError as exc:
            if name is not None:
                raise
            cli.err.print(f"[red]failed[/] {escape(str(exc))}", highlight=False)
            failed.append(extension.name)
            continue
        # A workspace server comes with Atrium: it was found, not built.
        done = "ready" if extension.build_type == "workspace" else "built"
        cli.out.print(
            f"[green]{done}[/] {escape(built.name)}: {escape(built.binary)} is"
            f" {escape(built.path)}",
            highlight=False,
        )
    if failed:
        raise BuildError(f"{len(failed)} of {len(targets)} failed to build: {', '.join(failed)}")
