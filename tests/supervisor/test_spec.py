"""What a server's process is given (``atrium.supervisor.spec``): Atrium's own settings (the
store URL) only for Atrium's own programs, the secret key only for the marketplace, each only
when the program IS the console script installed beside Atrium's interpreter, never for a
program that merely has its name."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from atrium.registry.loader import load_registry
from atrium.secretbox import SECRET_KEY_VARIABLE
from atrium.settings import load_settings
from atrium.supervisor.spec import LaunchSpec, launch_spec

DATABASE_URL = "postgresql://atrium:db-password@db.internal/atrium"
KEY = "$file:/run/keys/atrium-ring"
GATEWAY_ONLY = ("ATRIUM_DATABASE_URL", SECRET_KEY_VARIABLE, "OPENAI_API_KEY")


def specs(tmp_path: Path, path: str, **servers: dict[str, Any]) -> dict[str, LaunchSpec]:
    """The launch specs of ``servers`` in a project whose PATH is ``path``, with the gateway's
    secrets in its environment."""
    (tmp_path / "services/mcp").mkdir(parents=True, exist_ok=True)
    ports = iter(range(5101, 5200))
    document = {"mcp_servers": {n: {"port": next(ports), **c} for n, c in servers.items()}}
    (tmp_path / "services/mcp/servers.yaml").write_text(json.dumps(document))
    environ = {
        "PATH": path,
        "ATRIUM_DATABASE_URL": DATABASE_URL,
        SECRET_KEY_VARIABLE: KEY,
        "OPENAI_API_KEY": "sk-provider-key",
    }
    settings = load_settings(tmp_path, environ=environ)
    registry = load_registry(settings)
    return {name: launch_spec(registry.get(name), settings) for name in servers}


def impostor(folder: Path, name: str) -> str:
    """An executable ``folder/name``: anyone's program with a built-in's file name."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return str(program)


def test_only_the_installed_marketplace_gets_the_key_and_the_built_ins_the_store_url(
    tmp_path: Path,
) -> None:
    found = specs(
        tmp_path,
        "/usr/bin:/bin",  # found beside Atrium's interpreter, as in an unactivated virtualenv
        marketplace={"binary": "atrium-mcp-marketplace"},
        soul={"binary": "atrium-mcp-soul"},
        other={"command": [sys.executable, "-c", "pass"]},
    )

    marketplace, soul, other = found["marketplace"], found["soul"], found["other"]
    assert marketplace.binary_path == str(Path(sys.executable).parent / "atrium-mcp-marketplace")
    assert (marketplace.env[SECRET_KEY_VARIABLE], marketplace.env["ATRIUM_DATABASE_URL"]) == (
        KEY,
        DATABASE_URL,
    )
    assert soul.env["ATRIUM_DATABASE_URL"] == DATABASE_URL
    assert SECRET_KEY_VARIABLE not in soul.env
    assert not set(GATEWAY_ONLY) & set(other.env)
    assert "OPENAI_API_KEY" not in marketplace.env


def test_a_program_of_the_project_named_like_a_built_in_gets_nothing_of_the_gateways(
    tmp_path: Path,
) -> None:
    impostor(tmp_path / "tools", "atrium-mcp-marketplace")
    impostor(tmp_path / "tools", "atrium-mcp-soul")

    found = specs(
        tmp_path,
        "/usr/bin:/bin",
        http={"command": ["./tools/atrium-mcp-marketplace", "--port", "{port}"]},
        stdio={"transport": "stdio", "command": ["./tools/atrium-mcp-soul"]},
    )

    for spec in found.values():
        assert Path(spec.binary_path).parent == tmp_path / "tools"
        assert not set(GATEWAY_ONLY) & set(spec.env), spec.name


def test_a_program_on_path_with_the_marketplaces_name_is_not_the_marketplace(
    tmp_path: Path,
) -> None:
    earlier = tmp_path / "bin"
    impostor(earlier, "atrium-mcp-marketplace")

    found = specs(
        tmp_path, f"{earlier}:/usr/bin:/bin", marketplace={"binary": "atrium-mcp-marketplace"}
    )

    assert found["marketplace"].binary_path == str(earlier / "atrium-mcp-marketplace")
    assert not set(GATEWAY_ONLY) & set(found["marketplace"].env)
