"""deploy/Containerfile, read with a Dockerfile parser (no image is built here: no registry):
Python 3.11 slim, Atrium installed from the source tree by a user that is not root, the gateway
by default, the project folder a volume, and a HEALTHCHECK that really asks ``/health``."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

from tests.deploy.cluster import DEPLOY, ROOT, atrium, healthy, started, tail
from tests.polling import wait_until
from tests.processes import free_port

CONTAINERFILE = DEPLOY / "Containerfile"
IGNORE = DEPLOY / "Containerfile.dockerignore"


def parsed() -> DockerfileParser:
    return DockerfileParser(fileobj=io.StringIO(CONTAINERFILE.read_text(encoding="utf-8")))


def instructions(name: str) -> list[str]:
    return [i["value"] for i in parsed().structure if i["instruction"] == name]


def test_the_image_is_python_3_11_slim_with_atrium_installed_from_the_source_tree() -> None:
    assert parsed().baseimage == "python:3.11-slim"
    assert any("pip install ." in command.split("&&")[0] for command in instructions("RUN"))


def test_every_file_the_image_copies_is_in_the_repository_and_in_the_build_context() -> None:
    copies = [shlex.split(value) for value in instructions("COPY")]
    sources = [source for *sources, _ in copies for source in sources]
    included = [line[1:] for line in IGNORE.read_text().splitlines() if line.startswith("!")]

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in included, f"{IGNORE.name} leaves {source} out of the build context"


def test_atrium_runs_as_a_user_of_its_own_after_the_install() -> None:
    structure = [(i["instruction"], i["value"]) for i in parsed().structure]
    users = [index for index, (name, _) in enumerate(structure) if name == "USER"]
    installs = [i for i, (name, value) in enumerate(structure) if name == "RUN"]

    assert users, "no USER: the gateway would run as root"
    assert structure[users[-1]][1] not in {"root", "0", "0:0"}
    assert users[-1] > max(installs)


def test_the_gateway_is_the_default_command_of_a_console_script_atrium_installs() -> None:
    command = json.loads(parsed().cmd)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]

    assert command == ["atrium", "gateway"]
    assert command[0] in scripts


def test_the_project_folder_is_the_volume_the_environment_names() -> None:
    volumes: list[str] = [v for value in instructions("VOLUME") for v in json.loads(value)]
    env = parsed().envs

    assert env["ATRIUM_PROJECT"] in volumes
    assert env["ATRIUM_GATEWAY_HOST"] == "0.0.0.0"  # loopback is unreachable from outside


def healthcheck() -> list[str]:
    (value,) = instructions("HEALTHCHECK")
    options, _, command = value.partition("CMD")
    assert "--interval" in options
    argv: Any = json.loads(command)
    assert isinstance(argv, list)
    return [str(arg) for arg in argv]


def test_the_healthcheck_passes_on_a_running_gateway_and_fails_without_one(
    tmp_path: Path,
) -> None:
    argv = healthcheck()
    assert argv[0] == "python"
    check = [sys.executable, *argv[1:]]  # the image's python is this one's version
    project, port = tmp_path / "project", free_port()
    env = {**os.environ, "ATRIUM_GATEWAY_PORT": str(port), "NO_COLOR": "1"}
    subprocess.run(
        [*atrium(project), "init", str(project)], env=env, check=True, capture_output=True
    )
    log = tmp_path / "gateway.log"

    refused = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
    with started([*atrium(project), "gateway"], env, log):
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: healthy(base), timeout_s=60, what="the gateway", detail=lambda: tail(log)
        )
        passed = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)

    assert refused.returncode != 0
    assert passed.returncode == 0, passed.stderr
