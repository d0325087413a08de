"""Writing the project scaffold; see the package docstring."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from string import Template

from atrium.errors import display_path
from atrium.settings import SETTINGS_FILE, Settings


@dataclass(frozen=True)
class BuiltinServer:
    name: str
    port: int
    description: str
    scopes: tuple[str, ...]
    denied: tuple[str, ...] = ()

    @property
    def binary(self) -> str:
        return f"atrium-mcp-{self.name}"


# Servers for signed-in people name tools:read and tools:write beside user: clients ask for
# the scopes a server names (MCP "Scope Selection Strategy"), and ``user`` alone lets in but
# calls nothing, so a user-role token needs tools:write and a reader's tools:read
# (atrium.auth.roles, atrium.gateway.access).
PEOPLE = ("user", "tools:read", "tools:write", "admin")

BUILTIN_SERVERS = (
    BuiltinServer("atrium", 5010, "Execute atrium CLI commands", ("admin",)),
    BuiltinServer("soul", 5020, "AI-powered content tools", PEOPLE),
    BuiltinServer("content-manager", 5040, "Content management tools", PEOPLE),
    # Skills and secrets belong to their users; revealing a secret's value takes admin.
    BuiltinServer("marketplace", 5050, "Skills, secrets and sync", PEOPLE, ("delete_*", "admin_*")),
)

_KEEP_DIRS = ("services/agents", "services/playbooks", "extensions/mcp")


@dataclass
class InitReport:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def installed_binaries() -> frozenset[str]:
    """Console scripts installed with Atrium: a built-in server is enabled only if it exists."""
    return frozenset(ep.name for ep in metadata.entry_points(group="console_scripts"))


def init_project(
    settings: Settings, *, binaries: Callable[[], frozenset[str]] = installed_binaries
) -> InitReport:
    """Write every missing file of the scaffold under ``settings.project_dir``."""
    root = settings.project_dir
    report = InitReport()
    installed = binaries()
    files: dict[str, str] = {
        SETTINGS_FILE: _template("atrium.yaml"),
        ".gitignore": _template("gitignore"),
        "services/ai/config.yaml": _template("ai-config.yaml"),
        "services/agents/assistant.md": _template("agent.md"),
    }
    for server in BUILTIN_SERVERS:
        files[f"services/mcp/{server.name}.yaml"] = _server_yaml(server, server.binary in installed)
    for name, text in _playbooks().items():
        files[f"services/playbooks/{name}"] = text
    for relative, text in files.items():
        _write_new(root / relative, text, report, root)
    for relative in _KEEP_DIRS:
        directory = root / relative
        if not directory.exists():
            directory.mkdir(parents=True)
            (directory / ".gitkeep").touch()
            report.created.append(relative + "/")
    (root / "logs").mkdir(exist_ok=True)
    settings.state_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(settings.state_dir, 0o700)
    _write_keys(settings, report)
    return report


def _write_keys(settings: Settings, report: InitReport) -> None:
    """Every missing key file under ``.atrium/``."""
    # Imported here: joserfc and cryptography are for `atrium init`, not for BUILTIN_SERVERS'
    # importers (every `atrium` command).
    from atrium.auth.caller_keys import ensure_caller_keys
    from atrium.auth.keys import ensure_signing_keys
    from atrium.auth.signed import SESSION_KEY_FILE, ensure_session_key
    from atrium.secretbox import ensure_secret_key

    root = settings.project_dir
    path, created = ensure_signing_keys(settings.state_dir)
    (report.created if created else report.kept).append(display_path(path, root))
    path, created = ensure_caller_keys(settings.state_dir, settings.issuer)
    (report.created if created else report.kept).append(display_path(path, root))
    session_key = settings.state_dir / SESSION_KEY_FILE
    existed = session_key.exists()
    ensure_session_key(settings.state_dir)
    (report.kept if existed else report.created).append(display_path(session_key, root))
    path, created = ensure_secret_key(settings.state_dir)  # the marketplace's secrets at rest
    (report.created if created else report.kept).append(display_path(path, root))


def _template(name: str) -> str:
    return (resources.files("atrium.scaffold") / "templates" / name).read_text(encoding="utf-8")


def _playbooks() -> dict[str, str]:
    """The playbooks shipped with Atrium, by file name; the atrium server lists and shows them."""
    folder = resources.files("atrium.scaffold") / "templates" / "playbooks"
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(".md")
    }


def _server_yaml(server: BuiltinServer, enabled: bool) -> str:
    return Template(_template("server.yaml")).substitute(
        name=server.name,
        binary=server.binary,
        package=server.name,
        port=server.port,
        enabled="true" if enabled else "false",
        description=server.description,
        scopes=", ".join(server.scopes),
        denied=", ".join(f'"{glob}"' for glob in server.denied),
    )


def _write_new(path: Path, text: str, report: InitReport, root: Path) -> None:
    shown = display_path(path, root)
    if path.exists():
        report.kept.append(shown)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        report.kept.append(shown)
        return
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
    report.created.append(shown)
