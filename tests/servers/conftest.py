"""A real project folder made by ``atrium init``, and its settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atrium.settings import Settings, load_settings
from tests.cli.helpers import run_atrium
from tests.processes import free_server_ports


@pytest.fixture
def project(tmp_path: Path) -> Settings:
    """An initialised project; its environment is this one without the runner's ATRIUM_*."""
    result = run_atrium("init", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    free_server_ports(tmp_path)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_")}
    environ["ATRIUM_PORT_RANGE"] = "1024-65535"  # the free ports above may be anywhere
    return load_settings(tmp_path, environ=environ)
