"""How to start one server: its command line, environment and where it answers.

A server process gets an allow-listed environment (what programs need to run: PATH, HOME,
locale, proxies, CA bundles) plus the server's own resolved ``env:``, never the rest of the
gateway's environment, which holds its secrets (database URL, signing keys, provider keys).
``atrium build mcp`` runs builds with the same allow-list (``allowed_environment``).

Atrium's own built-in servers also get the ``ATRIUM_*`` settings (``ENV_OVERRIDES``: the store
URL with its password among them) so they open the same store, and the marketplace alone gets
``ATRIUM_SECRET_KEY``, its key ring. Both only when the program is the console script installed
beside Atrium's own interpreter (compared after resolving links), never for a program that
merely has the name: ``command: [./tools/atrium-mcp-marketplace]`` is anyone's program.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from atrium.auth.caller_keys import PUBLIC_FILE, ensure_caller_keys
from atrium.errors import AtriumError
from atrium.registry.loader import ServerEntry
from atrium.registry.schema import HttpServer, RemoteServer, StdioServer
from atrium.registry.secrets import resolve_env
from atrium.scaffold import BUILTIN_SERVERS
from atrium.secretbox import SECRET_KEY_VARIABLE
from atrium.settings import CALLER_KEYS_VARIABLE, ENV_OVERRIDES, Settings
from atrium.supervisor.environment import allowed_environment
from atrium.supervisor.placement import LOOPBACK, listen_address

_BUILTIN_BINARIES = frozenset(server.binary for server in BUILTIN_SERVERS)
_SECRETS_BINARY = next(server.binary for server in BUILTIN_SERVERS if server.name == "marketplace")


class LaunchError(AtriumError):
    """A server cannot be started as configured (binary missing, port taken, ...)."""


@dataclass(frozen=True)
class LaunchSpec:
    name: str
    transport: str
    port: int
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    log_file: Path
    binary_path: str
    version: str | None
    # One of Atrium's own built-in servers (its console script beside our interpreter).
    builtin: bool = False
    # Where it listens: loopback, or this host's address that its backend.host names.
    host: str = LOOPBACK

    @property
    def health_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/health"


def launch_spec(
    entry: ServerEntry, settings: Settings, secrets: Mapping[str, str] | None = None
) -> LaunchSpec:
    """The spec for a hosted (http or stdio) server; raises if it cannot be started.
    ``secrets``: the stored secrets its ``env:`` names (``registry.secrets.stored_secrets``)."""
    config = entry.config
    if isinstance(config, RemoteServer):
        raise LaunchError(f"server '{entry.name}' is remote: there is no process to start")
    host = listen_address(config)
    if host is None:
        assert config.backend is not None  # only a backend elsewhere has no address here
        raise LaunchError(f"server '{entry.name}' runs on {config.backend.host}, not here")
    env = allowed_environment(settings.environ)
    env.update(resolve_env(entry, settings, secrets))
    # The public half only: what a backend needs to check the gateway's caller assertions.
    ensure_caller_keys(settings.state_dir, settings.issuer)
    env.update(
        ATRIUM_PROJECT=str(settings.project_dir),
        ATRIUM_SERVER_NAME=entry.name,
        ATRIUM_SERVER_PORT=str(config.port),
        PYTHONUNBUFFERED="1",  # log lines reach the log file as they are written
    )
    env[CALLER_KEYS_VARIABLE] = str(settings.state_dir / PUBLIC_FILE)
    program, argv = _command(entry, config, settings, host)
    builtin = builtin_program(program)
    if builtin is not None:
        shared = {*ENV_OVERRIDES}
        if builtin == _SECRETS_BINARY:  # it seals and opens secrets with the same ring
            shared.add(SECRET_KEY_VARIABLE)
        env.update({k: v for k, v in settings.environ.items() if k in shared})
    return LaunchSpec(
        name=entry.name,
        transport=config.transport,
        port=config.port,
        argv=argv,
        env=env,
        cwd=settings.project_dir,
        log_file=settings.logs_dir / f"mcp-{entry.name}.log",
        binary_path=program,
        version=_version_of(program),
        builtin=builtin is not None and isinstance(config, HttpServer) and argv[0] == program,
        host=host,
    )


def builtin_program(program: str) -> str | None:
    """The built-in server's console script ``program`` is, if it is the one installed beside
    Atrium's interpreter (as ``find_program`` returns it); None for any other program."""
    name = Path(program).name
    if name not in _BUILTIN_BINARIES:
        return None
    installed = Path(sys.executable).parent / name
    return name if Path(program).resolve() == installed.resolve() else None


def _command(
    entry: ServerEntry, config: HttpServer | StdioServer, settings: Settings, host: str
) -> tuple[str, tuple[str, ...]]:
    port = str(config.port)
    # Only a server that other hosts reach is told where to listen: loopback is the default.
    listen = () if host == LOOPBACK else ("--host", host)
    if isinstance(config, StdioServer):
        program = find_program(entry, config.command[0], settings)
        bridge = (sys.executable, "-m", "atrium.bridge", "--name", entry.name)
        return program, (*bridge, "--port", port, *listen, "--", program, *config.command[1:])
    if config.binary or not config.command:  # the schema asks for one of the two
        program = find_program(entry, config.binary or "", settings)
        project = ("--project", str(settings.project_dir))
        return program, (program, "--port", port, *listen, *project)
    program = find_program(entry, config.command[0], settings)
    values = {"port": port, "host": host, "project": str(settings.project_dir)}
    return program, (program, *(_fill(arg, values) for arg in config.command[1:]))


def _fill(argument: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        argument = argument.replace("{" + key + "}", value)
    return argument


def find_program(entry: ServerEntry, name: str, settings: Settings) -> str:
    """``name`` on PATH, then beside the running interpreter (an unactivated virtualenv)."""
    if "/" in name:
        # Never resolve symlinks: a virtualenv's bin/python is a symlink that must stay one.
        path = Path(os.path.normpath(settings.project_dir / name))
        if path.is_file():
            return str(path)
        raise LaunchError(f"server '{entry.name}': program {name} does not exist ({path})")
    search = settings.environ.get("PATH", "")
    found = shutil.which(name, path=f"{search}:{Path(sys.executable).parent}")
    if found is None:
        raise LaunchError(
            f"server '{entry.name}': '{name}' was not found on PATH"
            f" (install its package, e.g. `pip install {entry.config.package or name}`)"
        )
    return found


def _version_of(program: str) -> str | None:
    """The version of the Python distribution that installed ``program``, if one did."""
    script = Path(program).name
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == "console_scripts" and ep.name == script:
                return f"{dist.metadata['Name']} {dist.version}"
    return None
