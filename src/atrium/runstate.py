"""The supervisor's runtime state, kept where any other ``atrium`` process can read it.

``.atrium/run/state.json`` is rewritten atomically on every change; ``supervisor.lock`` is held
(``flock``) for as long as a supervisor runs, so a reader can tell a live state from one left
behind by a supervisor that was killed.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from atrium.errors import AtriumError

ServerState = Literal["starting", "running", "backoff", "stopping", "stopped", "failed"]

STATE_FILE = "state.json"
LOCK_FILE = "supervisor.lock"


@dataclass
class ServerStatus:
    name: str
    transport: str
    port: int | None
    state: ServerState = "stopped"
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_error: str | None = None
    binary: str | None = None
    version: str | None = None


@dataclass
class RuntimeState:
    supervisor_pid: int
    started_at: float
    servers: dict[str, ServerStatus] = field(default_factory=dict)
    ready: bool = False  # the first start of every server has finished, well or not

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuntimeState:
        servers = {name: ServerStatus(**value) for name, value in data["servers"].items()}
        return cls(data["supervisor_pid"], data["started_at"], servers, bool(data.get("ready")))


def run_dir(state_dir: Path) -> Path:
    return state_dir / "run"


def write_state(state_dir: Path, state: RuntimeState) -> None:
    directory = run_dir(state_dir)
    temporary = directory / f".{STATE_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(state.to_json(), indent=2), encoding="utf-8")
    os.replace(temporary, directory / STATE_FILE)


def read_state(state_dir: Path) -> RuntimeState | None:
    """The state of the running supervisor, or ``None`` when none runs."""
    if running_supervisor(state_dir) is None:
        return None
    try:
        data = json.loads((run_dir(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return RuntimeState.from_json(data)


class SupervisorLock:
    """Held by the one supervisor of a project; released by the kernel if it dies."""

    def __init__(self, state_dir: Path) -> None:
        self.path = run_dir(state_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def running_supervisor(state_dir: Path) -> int | None:
    """The pid of the supervisor holding the lock, or ``None``."""
    path = run_dir(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class AlreadyRunning(AtriumError):
    def __init__(self, pid: int) -> None:
        super().__init__(
            f"Atrium is already running for this project (supervisor pid {pid});"
            " see `atrium infra services status`"
        )
