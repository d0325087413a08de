"""The secret box: AES-256-GCM with the owner and name bound in, and its key ring on disk or in
``ATRIUM_SECRET_KEY``, read and rotated as other processes would."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from atrium.secretbox import (
    MAX_VALUE_BYTES,
    SECRET_KEY_FILE,
    SECRET_KEY_VARIABLE,
    SecretBox,
    SecretKeyError,
    SecretUnreadable,
    add_key,
    check_name,
    check_value,
    ensure_secret_key,
    key_id,
    new_key,
    retire_keys,
)
from atrium.settings import Settings, load_settings

VALUE = "sk-live-0123456789abcdef"


def project(tmp_path: Path, **environ: str) -> Settings:
    return load_settings(project_dir=tmp_path, environ=environ)


def initialised(tmp_path: Path) -> Settings:
    """A project whose ring ``atrium init`` wrote."""
    settings = project(tmp_path)
    ensure_secret_key(settings.state_dir)
    return settings


def ring_file(settings: Settings) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((settings.state_dir / SECRET_KEY_FILE).read_text())
    return loaded


def test_a_sealed_value_opens_for_its_row_and_holds_no_plaintext(tmp_path: Path) -> None:
    box = SecretBox.load(initialised(tmp_path))

    sealed = box.seal(VALUE, owner="ada", name="API_TOKEN")
    again = box.seal(VALUE, owner="ada", name="API_TOKEN")

    assert box.open(sealed, owner="ada", name="API_TOKEN") == VALUE
    assert VALUE.encode() not in sealed.ciphertext
    assert len(sealed.nonce) == 12
    assert sealed.nonce != again.nonce  # a fresh nonce per value
    assert sealed.ciphertext != again.ciphertext
    assert sealed.key_id == box.current


@pytest.mark.parametrize(("owner", "name"), [("bob", "API_TOKEN"), ("ada", "OTHER_TOKEN")])
def test_a_value_moved_to_another_owner_or_name_does_not_open(
    tmp_path: Path, owner: str, name: str
) -> None:
    box = SecretBox.load(initialised(tmp_path))
    sealed = box.seal(VALUE, owner="ada", name="API_TOKEN")

    with pytest.raises(SecretUnreadable) as caught:
        box.open(sealed, owner=owner, name=name)

    assert caught.value.name == name
    assert VALUE not in str(caught.value)


def test_an_altered_value_does_not_open(tmp_path: Path) -> None:
    box = SecretBox.load(initialised(tmp_path))
    sealed = box.seal(VALUE, owner="ada", name="API_TOKEN")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]

    with pytest.raises(SecretUnreadable):
        box.open(replace(sealed, ciphertext=flipped), owner="ada", name="API_TOKEN")


def test_start_writes_the_missing_project_ring_once_with_mode_0600(tmp_path: Path) -> None:
    settings = project(tmp_path)

    box = SecretBox.load(settings)
    written_before = box.written
    box.start()
    other = SecretBox.load(settings)
    other.start()  # a second starter keeps the ring it finds
    path, created = ensure_secret_key(settings.state_dir)

    assert (written_before, box.written, created) == (False, True, False)
    assert path.stat().st_mode & 0o777 == 0o600
    assert ring_file(settings)["current"] == box.current == other.current


def test_a_missing_project_ring_is_not_made_up_by_loading_sealing_or_opening(
    tmp_path: Path,
) -> None:
    settings = initialised(tmp_path)
    sealed = SecretBox.load(settings).seal(VALUE, owner="ada", name="API_TOKEN")
    (settings.state_dir / SECRET_KEY_FILE).unlink()  # restored without it, or never written
    box = SecretBox.load(settings)

    errors = []
    for attempt in (
        lambda: box.seal(VALUE, owner="ada", name="API_TOKEN"),
        lambda: box.open(sealed, owner="ada", name="API_TOKEN"),
        lambda: box.current,
    ):
        with pytest.raises(SecretKeyError) as caught:
            attempt()
        errors.append(str(caught.value))

    assert not (settings.state_dir / SECRET_KEY_FILE).exists()
    assert all(str(settings.state_dir / SECRET_KEY_FILE) in e and "restore" in e for e in errors)


def test_a_ring_deleted_under_a_running_box_is_not_replaced(tmp_path: Path) -> None:
    settings = initialised(tmp_path)
    box = SecretBox.load(settings)
    (settings.state_dir / SECRET_KEY_FILE).unlink()

    with pytest.raises(SecretKeyError, match="restore"):
        box.seal(VALUE, owner="ada", name="API_TOKEN")

    assert not (settings.state_dir / SECRET_KEY_FILE).exists()


def test_a_key_in_the_environment_is_a_ring_of_that_key_and_no_file(tmp_path: Path) -> None:
    key = new_key()
    settings = project(tmp_path, **{SECRET_KEY_VARIABLE: base64.b64encode(key).decode()})

    box = SecretBox.load(settings)
    url_safe = SecretBox.load(
        project(tmp_path, **{SECRET_KEY_VARIABLE: base64.urlsafe_b64encode(key).decode()})
    )

    assert box.current == key_id(key) == url_safe.current
    assert box.path is None
    assert not (settings.state_dir / SECRET_KEY_FILE).exists()
    sealed = box.seal(VALUE, owner="ada", name="API_TOKEN")
    assert url_safe.open(sealed, owner="ada", name="API_TOKEN") == VALUE


@pytest.mark.parametrize("value", ["too-short", base64.b64encode(b"x" * 16).decode(), "!!!!"])
def test_a_key_in_the_environment_that_is_not_32_bytes_is_refused(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(SecretKeyError) as caught:
        SecretBox.load(project(tmp_path, **{SECRET_KEY_VARIABLE: value}))

    assert SECRET_KEY_VARIABLE in str(caught.value)
    assert value not in str(caught.value)


def test_a_file_reference_names_the_ring_relative_to_the_project(tmp_path: Path) -> None:
    key = new_key()
    (tmp_path / "keys").mkdir()
    ring = {"current": key_id(key), "keys": {key_id(key): base64.urlsafe_b64encode(key).decode()}}
    (tmp_path / "keys/ring.json").write_text(json.dumps(ring))

    box = SecretBox.load(project(tmp_path, **{SECRET_KEY_VARIABLE: "$file:keys/ring.json"}))

    assert box.current == key_id(key)
    assert box.path == tmp_path / "keys/ring.json"


def test_a_file_reference_to_no_file_is_an_error_and_no_ring_is_made_up(tmp_path: Path) -> None:
    settings = project(tmp_path, **{SECRET_KEY_VARIABLE: "$file:keys/missing.json"})

    with pytest.raises(SecretKeyError) as caught:
        SecretBox.load(settings)

    assert "keys/missing.json" in str(caught.value)
    assert not (tmp_path / "keys/missing.json").exists()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("not json", "JSON expected"),
        ('{"current": "a", "keys": []}', '"keys" must be an object'),
        ('{"current": "nope", "keys": {}}', '"current" must name'),
    ],
)
def test_a_broken_ring_file_is_refused_saying_what_is_wrong(
    tmp_path: Path, text: str, said: str
) -> None:
    settings = project(tmp_path)
    settings.state_dir.mkdir()
    (settings.state_dir / SECRET_KEY_FILE).write_text(text)

    with pytest.raises(SecretKeyError) as caught:
        SecretBox.load(settings)

    assert said in str(caught.value)


def test_a_ring_whose_id_does_not_match_its_key_is_refused(tmp_path: Path) -> None:
    settings = initialised(tmp_path)
    ring = ring_file(settings)
    keys = ring["keys"]
    assert isinstance(keys, dict)
    ring["keys"] = {"0000000000000000": next(iter(keys.values()))}
    ring["current"] = "0000000000000000"
    (settings.state_dir / SECRET_KEY_FILE).write_text(json.dumps(ring))

    with pytest.raises(SecretKeyError) as caught:
        SecretBox.load(settings)

    assert "does not match its id" in str(caught.value)
    assert str(next(iter(keys.values()))) not in str(caught.value)


def test_a_new_key_becomes_current_and_the_old_ones_stay_until_retired(tmp_path: Path) -> None:
    settings = initialised(tmp_path)
    old = SecretBox.load(settings)
    sealed = old.seal(VALUE, owner="ada", name="API_TOKEN")

    rotated = add_key(settings)
    kept = retire_keys(settings, in_use={old.current})
    dropped = retire_keys(settings, in_use=set())

    assert rotated.current != old.current
    assert rotated.key_ids == {old.current, rotated.current}
    assert rotated.open(sealed, owner="ada", name="API_TOKEN") == VALUE
    assert (kept, dropped) == ([], [old.current])
    assert SecretBox.load(settings).key_ids == {rotated.current}


def test_a_running_process_follows_a_rotation_made_by_another(tmp_path: Path) -> None:
    settings = initialised(tmp_path)
    running = SecretBox.load(settings)  # read before the rotation
    before = running.seal(VALUE, owner="ada", name="API_TOKEN")

    rotated = add_key(settings)
    by_the_rotation = rotated.seal(VALUE, owner="ada", name="API_TOKEN")
    retire_keys(settings, in_use=set())

    # It opens values sealed under the new key, seals under it, and still opens the old ones.
    assert running.open(by_the_rotation, owner="ada", name="API_TOKEN") == VALUE
    assert running.seal(VALUE, owner="ada", name="API_TOKEN").key_id == rotated.current
    assert running.open(before, owner="ada", name="API_TOKEN") == VALUE


def test_a_value_under_a_key_no_ring_holds_says_which_key(tmp_path: Path) -> None:
    elsewhere = SecretBox.load(initialised(tmp_path / "other"))
    sealed = elsewhere.seal(VALUE, owner="ada", name="API_TOKEN")

    with pytest.raises(SecretUnreadable) as caught:
        SecretBox.load(initialised(tmp_path)).open(sealed, owner="ada", name="API_TOKEN")

    assert sealed.key_id in str(caught.value)


def test_a_key_in_the_environment_cannot_be_rotated_in_place(tmp_path: Path) -> None:
    settings = project(tmp_path, **{SECRET_KEY_VARIABLE: base64.b64encode(new_key()).decode()})

    with pytest.raises(SecretKeyError) as caught:
        add_key(settings)

    assert "$file:" in str(caught.value)


@pytest.mark.parametrize("name", ["API_TOKEN", "A", "X1_2", "A" * 64])
def test_names_like_environment_variables_in_capitals_are_secret_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "api_token", "1TOKEN", "_TOKEN", "API-TOKEN", "A" * 65])
def test_other_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ValueError, match="capital letters"):
        check_name(name)


@pytest.mark.parametrize(
    ("value", "said"),
    [("", "empty"), ("a\x00b", "NUL"), ("é" * (MAX_VALUE_BYTES // 2 + 1), "bytes long")],
)
def test_values_that_cannot_be_stored_are_refused_without_being_quoted(
    value: str, said: str
) -> None:
    with pytest.raises(ValueError, match=said) as caught:
        check_value(value)

    assert value == "" or value[:8] not in str(caught.value)


def test_a_ring_readable_by_others_is_read_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = initialised(tmp_path)
    os.chmod(settings.state_dir / SECRET_KEY_FILE, 0o644)

    SecretBox.load(settings)

    assert "chmod 600" in caplog.text
