"""Running the ``atrium`` command in-process, the way a user runs it, and capturing its output."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from atrium.cli.main import main

# Variables that would change what the command does or how Rich renders it: the runner's own
# ATRIUM_* settings must not leak into a test, and forced colour would put escape codes between
# the characters the tests look for.
_DROPPED_PREFIXES = ("ATRIUM_",)
_DROPPED = frozenset({"FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE", "TTY_COMPATIBLE"})


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_atrium(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> CliResult:
    """Run ``atrium ARGS`` with ``env`` added to a clean environment and ``cwd`` as the folder."""
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with (
        _environment(env or {}),
        _working_directory(cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
    if isinstance(code, str):  # sys.exit("message") prints the message and exits 1
        err.write(code)
        code = 1
    return CliResult(code or 0, out.getvalue(), err.getvalue())


def run_atrium_blocking(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> CliResult:
    """``run_atrium``, also from an async test: there in a thread of its own, since the command
    runs its own event loop (``asyncio.run``), and the test's loop waits as it would on a
    subprocess."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_atrium(*args, env=env)
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(run_atrium, *args, env=env).result(timeout=timeout)


@contextlib.contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    kept = {
        name: value
        for name, value in saved.items()
        if name not in _DROPPED and not name.startswith(_DROPPED_PREFIXES)
    }
    os.environ.clear()
    os.environ.update({**kept, "COLUMNS": "200", **extra})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _working_directory(cwd: Path | None) -> Iterator[None]:
    if cwd is None:
        yield
        return
    with contextlib.chdir(cwd):
        yield
