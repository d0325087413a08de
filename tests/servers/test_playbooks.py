"""Reading ``services/playbooks/*.md``: front matter, names, problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from atrium.errors import NotFoundError
from atrium.servers.atrium.playbooks import (
    PlaybookError,
    load_playbook,
    load_playbooks,
    parse_playbook,
)
from atrium.settings import Settings, load_settings

DEPLOY = """\
---
title: Deploy
description: Ship it.
tags: [ops, release]
author: someone   # a key of another tool: ignored
---

# Deploy

Steps.
"""


def project_with(tmp_path: Path, files: dict[str, str]) -> Settings:
    folder = tmp_path / "services" / "playbooks"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return load_settings(tmp_path, environ={})


def test_the_front_matter_gives_title_description_and_tags() -> None:
    playbook = parse_playbook("deploy", DEPLOY, "deploy.md")

    assert (playbook.title, playbook.description, playbook.tags) == (
        "Deploy",
        "Ship it.",
        ("ops", "release"),
    )
    assert playbook.body == "# Deploy\n\nSteps.\n"


def test_without_front_matter_the_title_is_the_name_and_the_body_is_everything() -> None:
    playbook = parse_playbook("notes", "# Notes\n---\nmore\n", "notes.md")

    assert (playbook.title, playbook.description, playbook.tags) == ("notes", "", ())
    assert playbook.body == "# Notes\n---\nmore\n"


def test_malformed_front_matter_names_the_line_in_the_file() -> None:
    text = "---\ntitle: ok\ntags: [unclosed\n---\nbody\n"

    with pytest.raises(PlaybookError) as caught:
        parse_playbook("broken", text, "services/playbooks/broken.md")

    assert caught.value.problem.source == "services/playbooks/broken.md"
    assert caught.value.problem.line is not None
    assert caught.value.problem.line >= 3


def test_a_front_matter_value_of_the_wrong_type_names_its_key() -> None:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook("bad", "---\ntitle: ok\ntags: {a: 1}\n---\n", "bad.md")

    assert caught.value.problem.key_path == "tags"
    assert caught.value.problem.line == 3


def test_playbooks_are_listed_by_name_and_broken_ones_reported(tmp_path: Path) -> None:
    settings = project_with(
        tmp_path,
        {
            "zeta.md": "# Z\n",
            "deploy.md": DEPLOY,
            "broken.md": "---\ntags: [\n---\n",
            "Not A Name.md": "# ignored\n",
            "readme.txt": "ignored",
        },
    )

    found, problems = load_playbooks(settings)

    assert [playbook.name for playbook in found] == ["deploy", "zeta"]
    assert [problem.problem.source for problem in problems] == ["services/playbooks/broken.md"]


def test_an_unknown_name_is_not_found_and_the_known_names_are_given(tmp_path: Path) -> None:
    settings = project_with(tmp_path, {"deploy.md": DEPLOY})

    with pytest.raises(NotFoundError) as caught:
        load_playbook(settings, "../deploy")

    assert caught.value.known == ("deploy",)


def test_a_project_without_a_playbooks_folder_has_none(tmp_path: Path) -> None:
    assert load_playbooks(load_settings(tmp_path, environ={})) == ([], [])
