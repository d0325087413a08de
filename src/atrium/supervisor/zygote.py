"""The supervisor's side of the zygote (``atrium.servers.zygote``): built-in servers by fork.

``atrium start`` starts the zygote before it imports the gateway (the two imports then run side
by side on two cores); otherwise it is started at the first start of a built-in server. It lives
until the supervisor closes. A server it forks is reparented to the supervisor (a child
subreaper) before its pid is answered, so it is the supervisor's child like any other:
``AdoptedProcess`` waits for it with a pidfd, where ``asyncio`` waits only for the children it
spawned itself.

A zygote that cannot be started or has died costs nothing but speed: the server is started the
ordinary way (``exec``) and a new zygote is tried at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from atrium.scaffold import BUILTIN_SERVERS
from atrium.settings import Settings
from atrium.supervisor.environment import allowed_environment, marks, new_marker

if TYPE_CHECKING:
    from atrium.supervisor.spec import LaunchSpec

logger = logging.getLogger(__name__)

ZYGOTE_LOG = "zygote.log"
READY_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 10.0


class Child(Protocol):
    """What the supervisor needs of a server process, spawned or adopted."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class ZygoteUnavailable(Exception):
    """The zygote cannot fork this server now; start it the ordinary way."""


class AdoptedProcess:
    """A child of ours that ``asyncio`` did not spawn: its exit is read from a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._fd = os.pidfd_open(pid)
        self._loop.add_reader(self._fd, self._check)
        self._check()  # it may be gone already

    def _check(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: its code is lost, not its exit
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class Zygote:
    """The zygote process, and the one conversation at a time we have with it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._lock = asyncio.Lock()
        self._ready = False

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @classmethod
    def start(cls, environ: Mapping[str, str], marks: Mapping[str, str], log_file: Path) -> Zygote:
        """Start the zygote (with what of ``environ`` any program may see, and ``marks``); it
        imports the built-in servers while the caller goes on. No event loop needed: ``atrium
        start`` starts it before it imports the gateway, so the two imports overlap."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "atrium.servers.zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**allowed_environment(environ), **marks},
                start_new_session=True,
            )
        return cls(process)

    async def spawn(self, spec: LaunchSpec) -> AdoptedProcess:
        """Fork the built-in server ``spec`` describes; raise ``ZygoteUnavailable`` if we cannot."""
        program = Path(spec.argv[0]).name
        request = {
            "program": program,
            "argv": [program, *spec.argv[1:]],
            "env": spec.env,
            "cwd": str(spec.cwd),
            "log": str(spec.log_file),
        }
        async with self._lock:
            try:
                answer = await asyncio.to_thread(self._exchange, orjson.dumps(request))
            except (OSError, TimeoutError, ValueError) as exc:
                await self.close()
                raise ZygoteUnavailable(f"the zygote stopped answering ({exc!r})") from None
        pid = answer.get("pid") if isinstance(answer, dict) else None
        if not isinstance(pid, int):
            raise ZygoteUnavailable(str(answer.get("error", "no pid in its answer")))
        return AdoptedProcess(pid)

    def _exchange(self, request: bytes) -> Any:
        """Send one request and read its answer (blocking: run in a thread)."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        if not self._ready:  # the first line says the imports are done
            self._read_line(stdout, READY_TIMEOUT_S)
            self._ready = True
        stdin.write(request + b"\n")
        stdin.flush()
        return orjson.loads(self._read_line(stdout, ANSWER_TIMEOUT_S))

    @staticmethod
    def _read_line(stdout: IO[bytes], timeout_s: float) -> bytes:
        # One line is all the zygote writes before it reads our next request: nothing is ever
        # left in the buffer for select() to miss.
        readable, _, _ = select.select([stdout], [], [], timeout_s)
        if not readable:
            raise TimeoutError(f"no answer within {timeout_s:g} s")
        line = stdout.readline()
        if not line:
            raise OSError("the zygote has exited")
        return line

    async def close(self) -> None:
        """End the zygote (its servers run on: they are not its children)."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await asyncio.to_thread(self._process.wait)
        if self._process.stdout is not None:
            self._process.stdout.close()


def start_zygote(settings: Settings, marks: Mapping[str, str]) -> Zygote:
    """Start the project's zygote; its own output (an import error) goes to ``logs/zygote.log``."""
    return Zygote.start(settings.environ, marks, settings.logs_dir / ZYGOTE_LOG)


def early_zygote(settings: Settings, binaries: Iterable[str | None]) -> tuple[str, Zygote] | None:
    """A marker and a zygote started with it, when a built-in server is among ``binaries`` (of
    the servers about to start) and forking can work here; else None."""
    wanted = {server.binary for server in BUILTIN_SERVERS}
    if not (hasattr(os, "pidfd_open") and wanted.intersection(binaries)):
        return None
    marker = new_marker()
    try:
        return marker, start_zygote(settings, marks(marker))
    except OSError as exc:
        logger.warning("cannot start the zygote (%s): servers start one by one", exc)
        return None
