"""The zygote: one process that imports the built-in servers once and forks each of them.

Importing a built-in server (the MCP SDK, pydantic, SQLAlchemy, Starlette, uvicorn) costs about
a second of CPU. Four of them started side by side cost four seconds of CPU, two seconds of
wall time on two cores, before any of them answers. The supervisor instead starts this program
(``python -m atrium.servers.zygote``) once; it imports the four console scripts' modules and
then, asked on its stdin, forks a server that runs its console script's ``main`` exactly as the
program would have run it: its own session, its own environment, working directory, argv and
log file. A fork costs milliseconds, so the four start in about the time of one import.

Each server is forked twice (the middle process exits at once), so it is reparented to the
supervisor, a child subreaper: the supervisor waits for it, signals its group and reaps it as it
does any process it spawned. The zygote itself is not a subreaper and never a server's parent.

Both die with the supervisor: the zygote and each server set ``PR_SET_PDEATHSIG`` and then check
that their parent is still the supervisor (``ATRIUM_SUPERVISOR_PID``), so a supervisor killed at
any moment, a server's start-up included, leaves none of them running (``atrium.deathsig``).

What a fork shares with its zygote, unlike an exec: the code imported at the zygote's start (a
built-in server restarted after Atrium was upgraded in place runs the old code until `atrium
start` runs again, as the gateway itself does) and the interpreter's hash seed (the four
built-in servers hash strings alike; each one's seed is still unknown to its callers).

The protocol is one JSON object per line. Request: ``{"program": <console script name>,
"argv": [...], "env": {...}, "cwd": <dir>, "log": <file>}``; answer: ``{"pid": <int>}`` or
``{"error": <text>}``. The zygote ends when its stdin closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from typing import Any, NoReturn

from atrium.deathsig import die_with_parent, expected_parent
from atrium.scaffold import BUILTIN_SERVERS

Main = Callable[[list[str]], None]
REPARENT_WAIT_S = 2.0
PR_SET_NAME = 15


def load_mains() -> dict[str, Main]:
    """Each built-in console script's ``main``, imported (the cost this process exists for)."""
    wanted = {server.binary for server in BUILTIN_SERVERS}
    mains: dict[str, Main] = {}
    for entry in metadata.entry_points(group="console_scripts"):
        if entry.name in wanted:
            module, _, attribute = entry.value.partition(":")
            mains[entry.name] = getattr(importlib.import_module(module), attribute)
    return mains


def serve(mains: dict[str, Main], supervisor: int) -> None:
    """Answer spawn requests on stdin until it closes."""
    for line in sys.stdin:
        try:
            request = json.loads(line)
            main = mains.get(request.get("program"))
            if main is None:
                raise ValueError(f"not a built-in server: {request.get('program')!r}")
            answer: dict[str, Any] = {"pid": _fork(main, request, supervisor)}
        except Exception as exc:  # noqa: BLE001 (the top of a request: answered, never fatal)
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _fork(main: Main, request: dict[str, Any], supervisor: int) -> int:
    """Fork ``main`` as a grandchild that ends up the supervisor's child; its pid."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:  # the middle process: fork the server, say its pid, exit
        os.close(read)
        me = os.getpid()  # not the server's getppid(): by then this may have exited
        try:
            server = os.fork()
        except OSError:
            os._exit(1)
        if server != 0:
            os.write(write, str(server).encode())
            os._exit(0)
        os.close(write)
        _become(main, request, supervisor, me)  # never returns
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(middle, 0)  # once reaped, the server has been reparented to the supervisor
    if not answer:
        raise OSError("the fork of the server failed")
    return int(answer)


def _become(main: Main, request: dict[str, Any], supervisor: int, middle: int) -> NoReturn:
    """In the forked server: wait to be the supervisor's child, then run as the program would.

    It ends as a program does, by ``SystemExit`` out of every frame: the interpreter's exit
    handlers run (a coverage measurement saves its data there)."""
    code: int | str | None = 1
    try:
        deadline = time.monotonic() + REPARENT_WAIT_S
        while os.getppid() == middle and time.monotonic() < deadline:
            time.sleep(0.0005)
        os.setsid()
        die_with_parent(supervisor)
        _name_process(str(request["program"]))
        _redirect(str(request["log"]))
        os.chdir(str(request["cwd"]))
        # The environment the program would have been exec'd with, before it reads any of it.
        os.environ.clear()  # noqa: TID251
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # noqa: TID251
        argv = [str(arg) for arg in request["argv"]]
        sys.argv = argv
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        main(argv[1:])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    except BaseException:  # noqa: BLE001 (the top of the server process: traceback to its log)
        traceback.print_exc()
    raise SystemExit(code)


def _name_process(program: str) -> None:
    """Show the program's name (its first 15 bytes) where ``top`` and ``ps -e`` show one."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, program.encode()[:15], 0, 0, 0)


def _redirect(log: str) -> None:
    """stdin from /dev/null, stdout and stderr appended to ``log``, nothing else inherited."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.closerange(3, 65536)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdin, kept open
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - as above
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115


def main() -> None:
    supervisor = expected_parent()
    if supervisor is None:
        sys.exit("atrium.servers.zygote: only Atrium's supervisor starts this program")
    die_with_parent(supervisor)
    mains = load_mains()
    sys.stdout.write(json.dumps({"ready": sorted(mains)}) + "\n")
    sys.stdout.flush()
    serve(mains, supervisor)


if __name__ == "__main__":
    main()
