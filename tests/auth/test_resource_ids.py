"""``Resources.server_of``: the server a token's audience names. It is remembered (it is read
on every call a token makes), so the memo is tried the way a caller could try it: the same
URL asked again after other answers, URLs that differ from ours only in what makes them not
ours, and more distinct URLs than the memo holds."""

from __future__ import annotations

import pytest

from atrium.auth.resource_ids import MEMO_SIZE, Resources

PUBLIC = "http://localhost:8080"

CASES = [
    ("http://localhost:8080/api/v1/mcp/echo/mcp", "echo"),
    ("http://127.0.0.1:8080/api/v1/mcp/echo/mcp", "echo"),  # loopback names are one machine
    ("http://localhost:8081/api/v1/mcp/echo/mcp", None),  # another port
    ("https://localhost:8080/api/v1/mcp/echo/mcp", None),  # another scheme
    ("http://evil.example:8080/api/v1/mcp/echo/mcp", None),  # another host
    ("http://user@localhost:8080/api/v1/mcp/echo/mcp", None),  # credentials in the URL
    ("http://localhost:8080/api/v1/mcp/echo/mcp?x=1", None),  # a query
    ("http://localhost:8080/api/v1/mcp/echo/mcp#f", None),  # a fragment
    ("http://localhost:8080/api/v1/mcp/Echo/mcp", None),  # no server name
    ("http://localhost:8080/api/v1/mcp/echo/mcp/", None),
    ("http://[::1", None),  # no URL at all
    ("http://localhost:8080/api/v1/mcp/other/mcp", "other"),
]


@pytest.mark.parametrize(("url", "server"), CASES)
def test_a_url_names_the_server_it_names_the_first_time_and_every_time(
    url: str, server: str | None
) -> None:
    resources = Resources(PUBLIC)
    assert resources.server_of(url) == server
    for other, _ in CASES:  # every other answer in between
        resources.server_of(other)
    assert resources.server_of(url) == server


def test_more_urls_than_the_memo_holds_keep_it_bounded_and_right() -> None:
    resources = Resources(PUBLIC)
    for n in range(3 * MEMO_SIZE):
        name = f"s{n}"
        assert resources.server_of(f"{PUBLIC}/api/v1/mcp/{name}/mcp") == name
        assert resources.server_of(f"http://evil.example:8080/api/v1/mcp/{name}/mcp") is None
        assert len(resources._servers) <= MEMO_SIZE
    for url, server in CASES:
        assert resources.server_of(url) == server
