"""The supervisor's side of the zygote (``atrium.servers.zygote``): built-in servers by fork.

The zygote is started at the first start of a built-in server and lives until the supervisor
closes. A server it forks is reparented to the supervisor (a child subreaper) before its pid is
answered, so it is the supervisor's child like any other: ``AdoptedProcess`` waits for it with a
pidfd, where ``asyncio`` waits only for the children it spawned itself.

A zygote that cannot be started or has died costs nothing but speed: the server is started the
ordinary way (``exec``) and a new zygote is tried at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Protocol

import orjson

from atrium.supervisor.spec import LaunchSpec

logger = logging.getLogger(__name__)

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
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._lock = asyncio.Lock()
        self._ready = False

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.returncode is None

    @classmethod
    async def start(cls, env: dict[str, str], log_file: Path) -> Zygote:
        """Start the zygote; it imports the built-in servers while the caller goes on."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "atrium.servers.zygote",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        return cls(process)

    async def spawn(self, spec: LaunchSpec) -> AdoptedProcess:
        """Fork the built-in server ``spec`` describes; raise ``ZygoteUnavailable`` if we cannot."""
        program = Path(spec.argv[0]).name
        request: dict[str, object] = {
            "program": program,
            "argv": [program, *spec.argv[1:]],
            "env": spec.env,
            "cwd": str(spec.cwd),
            "log": str(spec.log_file),
        }
        async with self._lock:
            answer = await self._ask(request)
        pid = answer.get("pid")
        if not isinstance(pid, int):
            raise ZygoteUnavailable(str(answer.get("error", "no pid in the answer")))
        return AdoptedProcess(pid)

    async def _ask(self, request: dict[str, object]) -> dict[str, object]:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        try:
            if not self._ready:  # the first line says the imports are done
                await asyncio.wait_for(stdout.readline(), READY_TIMEOUT_S)
                self._ready = True
            stdin.write(orjson.dumps(request) + b"\n")
            await stdin.drain()
            line = await asyncio.wait_for(stdout.readline(), ANSWER_TIMEOUT_S)
            answer = orjson.loads(line) if line else None
        except (OSError, TimeoutError, orjson.JSONDecodeError) as exc:
            await self.close()
            raise ZygoteUnavailable(f"the zygote stopped answering ({exc!r})") from None
        if not isinstance(answer, dict):
            await self.close()
            raise ZygoteUnavailable("the zygote has exited")
        return answer

    async def close(self) -> None:
        """End the zygote (its servers run on: they are not its children)."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self._process.wait()
