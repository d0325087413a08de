"""Which atrium CLI commands the ``atrium`` tool may run, and running one.

A command arrives as one string from a model or a client. It is split with ``shlex`` and run
as ``python -m atrium --project <project> ARGS`` without a shell, so ``;``, ``|``, ``$(...)``
are only characters of an argument, never syntax. It runs only if its leading words equal one
entry of the allow-list, and never with ``--project``/``-p`` (the server serves one project)
nor ``--url`` (servers are reached through the gateway, where policy and audit apply). It runs
as the tool's caller (``atrium.auth.operator``): the caller's identity goes in its environment.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL, PIPE

import anyio
from anyio.abc import ByteReceiveStream

from atrium.errors import AtriumError

ALLOWED_COMMANDS_VARIABLE = "ATRIUM_ALLOWED_COMMANDS"

# Read-only commands: they show the configuration, the status and the logs, and change nothing.
DEFAULT_ALLOWED_COMMANDS = (
    "plugins mcp list",
    "plugins mcp status",
    "plugins mcp show",
    "plugins mcp tools",
    "infra logs",
)

TIMEOUT_S = 60.0

# Per stream; more is read and dropped so that the command is never blocked on a full pipe.
MAX_OUTPUT_BYTES = 512 * 1024
TRUNCATED_NOTE = "\n[output truncated by the atrium server]\n"

# Rich would colour or box the output for a terminal these variables claim to exist.
_DROPPED_VARIABLES = frozenset({"FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE", "TTY_COMPATIBLE"})
_OUTPUT_VARIABLES = {"NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}


class CommandRefused(AtriumError):
    """The command is not run: it is malformed, not allowed, or names another project."""


@dataclass(frozen=True)
class AllowList:
    """Command prefixes, each a tuple of words: ``("plugins", "mcp", "list")``."""

    prefixes: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """``"plugins mcp list, infra logs"``: comma-separated prefixes."""
        prefixes = tuple(tuple(item.split()) for item in text.split(",") if item.strip())
        return cls(prefixes)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AllowList:
        """``ATRIUM_ALLOWED_COMMANDS`` when set and not empty, else the read-only defaults."""
        text = environ.get(ALLOWED_COMMANDS_VARIABLE, "")
        return cls.parse(text if text.strip() else ", ".join(DEFAULT_ALLOWED_COMMANDS))

    def permits(self, args: Sequence[str]) -> bool:
        return any(tuple(args[: len(prefix)]) == prefix for prefix in self.prefixes)

    def __str__(self) -> str:
        return ", ".join(" ".join(prefix) for prefix in self.prefixes) or "(none)"


def parse_command(command: str, allowed: AllowList) -> tuple[str, ...]:
    """The arguments of ``command``, or ``CommandRefused`` saying why it may not run."""
    try:
        args = tuple(shlex.split(command))
    except ValueError as exc:
        raise CommandRefused(f"cannot parse the command: {exc}") from None
    if args and args[0] == "atrium":
        args = args[1:]  # "atrium plugins mcp list" is what a person types
    if any(_names_a_project(arg) for arg in args):
        raise CommandRefused("--project/-p is not allowed: this server runs on its own project")
    if any(_names_a_target(arg) for arg in args):
        raise CommandRefused(
            "--url is not allowed: commands reach servers through the gateway only"
        )
    if not args or not allowed.permits(args):
        raise CommandRefused(f"command not allowed; allowed commands start with: {allowed}")
    return args


def _names_a_project(arg: str) -> bool:
    return arg == "--project" or arg.startswith("--project=") or arg.startswith("-p")


def _names_a_target(arg: str) -> bool:
    return arg == "--url" or arg.startswith("--url=")


@dataclass(frozen=True)
class CliRun:
    """One finished run. ``exit_code`` is None when it was killed after the timeout."""

    args: tuple[str, ...]
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


async def run_cli(
    args: Sequence[str],
    *,
    project: Path,
    environ: Mapping[str, str],
    timeout_s: float = TIMEOUT_S,
) -> CliRun:
    """Run ``atrium --project PROJECT ARGS`` with this interpreter; kill it after ``timeout_s``."""
    argv = [sys.executable, "-m", "atrium", "--project", str(project), *args]
    env = {k: v for k, v in environ.items() if k not in _DROPPED_VARIABLES} | _OUTPUT_VARIABLES
    started = time.monotonic()
    outputs: list[bytes] = [b"", b""]
    async with (
        await anyio.open_process(argv, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, env=env) as process,
        anyio.create_task_group() as readers,
    ):
        for index, stream in enumerate((process.stdout, process.stderr)):
            assert stream is not None  # both are pipes
            readers.start_soon(_read_into, stream, outputs, index)
        with anyio.move_on_after(timeout_s) as waiting:
            await process.wait()
        if waiting.cancelled_caught:
            process.kill()
            await process.wait()
    stdout, stderr = (_text(data) for data in outputs)
    if waiting.cancelled_caught:
        stderr += f"\natrium: the command was stopped after {timeout_s:g} s\n"
    exit_code = None if waiting.cancelled_caught else process.returncode
    duration_ms = round((time.monotonic() - started) * 1000)
    return CliRun(tuple(args), exit_code, stdout, stderr, duration_ms)


async def _read_into(stream: ByteReceiveStream, outputs: list[bytes], index: int) -> None:
    kept = bytearray()
    truncated = False
    async for chunk in stream:
        room = MAX_OUTPUT_BYTES - len(kept)
        kept += chunk[:room]
        truncated = truncated or len(chunk) > room
    outputs[index] = bytes(kept) + (TRUNCATED_NOTE.encode() if truncated else b"")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
