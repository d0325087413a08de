"""The URI rules every part shares: three meanings of loopback, and one redirect URI parser."""

from __future__ import annotations

import pytest

from atrium.auth.uris import (
    UriError,
    is_loopback,
    is_loopback_host,
    is_this_machine,
    loopback_redirect_key,
    split_metadata_url,
    split_redirect_uri,
)

#  host, a loopback name, loopback, this machine
HOSTS = [
    ("localhost", True, True, True),
    ("LOCALHOST", True, True, True),
    ("127.0.0.1", True, True, True),
    ("::1", True, True, True),
    ("127.0.0.2", False, True, True),
    ("app.localhost", False, False, True),
    ("localhost.", False, False, True),
    ("0.0.0.0", False, False, True),
    ("::ffff:127.0.0.1", False, True, True),
    ("[::1]", False, False, False),
    ("10.0.0.1", False, False, False),
    ("example.com", False, False, False),
    ("", False, False, False),
]


@pytest.mark.parametrize(("host", "name", "loopback", "machine"), HOSTS)
def test_the_three_meanings_of_loopback(
    host: str, name: bool, loopback: bool, machine: bool
) -> None:
    assert (is_loopback_host(host), is_loopback(host), is_this_machine(host)) == (
        name,
        loopback,
        machine,
    )


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "x" * 2001,
        "https://app.example/cb\t",
        "https://app.exämple/cb",
        "https://app.example/c b",
        "https://app.example:99999/cb",
        "/relative/cb",
        "https://app.example/cb#frag",
        "https://app.example/cb#",
        "https://user@app.example/cb",
    ],
)
def test_a_redirect_uri_that_is_not_absolute_printable_and_plain_is_refused(uri: str) -> None:
    with pytest.raises(UriError):
        split_redirect_uri(uri)


@pytest.mark.parametrize(
    ("uri", "key"),
    [
        ("http://127.0.0.1:4000/cb?x=1", ("127.0.0.1", "/cb", "x=1")),
        ("http://[::1]/cb", ("::1", "/cb", "")),
        ("http://LOCALHOST:9/cb", ("localhost", "/cb", "")),
        ("https://127.0.0.1:4000/cb", None),
        ("http://127.0.0.2:4000/cb", None),
        ("http://127.0.0.1:4000/cb#x", None),
        ("http://127.0.0.1:bad/cb", None),
    ],
)
def test_a_loopback_redirect_is_keyed_without_its_port(
    uri: str, key: tuple[str, str, str] | None
) -> None:
    assert loopback_redirect_key(uri) == key


@pytest.mark.parametrize(
    ("url", "allow_http", "reason"),
    [
        ("http://app.example/client.json", False, "https"),
        ("https://app.example/", False, "path"),
        ("https://a@app.example/client.json", False, "user info"),
        ("https://app.example/a/%2e%2e/client.json", False, "dot segments"),
        ('https://app.example/"client".json', False, "malformed"),
    ],
)
def test_a_metadata_url_names_what_is_wrong_with_it(
    url: str, allow_http: bool, reason: str
) -> None:
    with pytest.raises(UriError, match=reason):
        split_metadata_url(url, allow_http=allow_http)


def test_a_metadata_url_may_use_http_only_when_allowed() -> None:
    assert split_metadata_url("http://127.0.0.1:3000/c.json", allow_http=True).port == 3000
