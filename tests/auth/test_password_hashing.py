"""Passwords at sign-in: an unknown user name must cost the server what a wrong password costs.

The sign-in page verifies every attempt against a hash: the user's, or a dummy one when no such
user exists, so the answer's time does not tell which names exist. The dummy is made without
running argon2 (issue 17); these tests try to make it cheaper to verify than a stored hash.
"""

from __future__ import annotations

from typing import Any

import argon2
import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2 import _password_hasher as argon2_hasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from argon2.low_level import verify_secret

from atrium.auth.hashing import dummy_password_hash, hash_password, password_matches
from tests.auth.flow import PASSWORD, Browser, Pkce, authorize_url
from tests.gateway.helpers import Gateway

Client = dict[str, Any]


def test_the_dummy_hash_has_the_parameters_of_a_stored_one() -> None:
    assert extract_parameters(dummy_password_hash()) == extract_parameters(hash_password("x"))


@pytest.mark.parametrize("password", ["", "x", PASSWORD, "a" * 4096, "пароль", "\x00"])
def test_verifying_against_the_dummy_runs_argon2_and_fails(password: str) -> None:
    # A malformed hash fails at once (InvalidHashError): an attacker would time that. Only a
    # mismatch comes after the derivation.
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(dummy_password_hash(), password)
    assert password_matches(password, dummy_password_hash()) is False


def test_the_dummy_is_not_the_same_in_two_processes() -> None:
    made = {dummy_password_hash.__wrapped__() for _ in range(20)}

    assert len(made) == 20
    salts = {text.split("$")[4] for text in made}
    digests = {text.split("$")[5] for text in made}
    assert len(salts) == len(digests) == 20


Verified = list[tuple[argon2.Parameters, str]]


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Verified:
    """Every argon2 verification the server makes: the hash's parameters and how it ended."""
    seen: Verified = []

    def counting(stored: bytes, secret: bytes, kind: argon2.Type) -> bool:
        parameters = extract_parameters(stored.decode("ascii"))
        try:
            result = verify_secret(stored, secret, kind)
        except VerifyMismatchError:
            seen.append((parameters, "mismatch"))
            raise
        except InvalidHashError:
            seen.append((parameters, "invalid"))
            raise
        seen.append((parameters, "match"))
        return result

    # PasswordHasher.verify calls the name its module imported: that is the one replaced.
    monkeypatch.setattr(argon2_hasher, "verify_secret", counting)
    return seen


async def test_an_unknown_name_costs_the_derivation_a_wrong_password_costs(
    gateway: Gateway, browser: Browser, client: Client, verifications: Verified
) -> None:
    login = await browser.authorize_url(
        authorize_url(gateway.base, client["client_id"], Pkce.new())
    )

    wrong = await browser.sign_in(login, "user", "not the password")
    unknown = await browser.sign_in(login, "nobody-by-this-name", "not the password")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text.count("Wrong user name or password.") == 1
    assert unknown.text.count("Wrong user name or password.") == 1
    assert [outcome for _, outcome in verifications] == ["mismatch", "mismatch"]
    stored, dummy = (parameters for parameters, _ in verifications)
    assert stored == dummy
