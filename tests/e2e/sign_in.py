"""A stand-in for the person at the browser, run as ``$BROWSER <url>`` by ``webbrowser``:
opens the authorization URL, signs in as $ATRIUM_TEST_USER, allows access and follows the
redirect back to the waiting application's loopback callback."""

from __future__ import annotations

import os
import re
import sys

import httpx2


def submit(
    browser: httpx2.Client, page: httpx2.Response, values: dict[str, str]
) -> httpx2.Response:
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert page.status_code == 200, page.text
    assert action, page.text
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page.text):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name[1]] = value[1].replace("&#34;", '"').replace("&amp;", "&") if value else ""
    return browser.post(str(page.url.join(action[1])), data={**fields, **values})


def main(url: str) -> None:
    user, password = os.environ["ATRIUM_TEST_USER"], os.environ["ATRIUM_TEST_PASSWORD"]
    with httpx2.Client(timeout=30, follow_redirects=False) as browser:
        consent = submit(browser, browser.get(url), {"username": user, "password": password})
        back = submit(browser, consent, {"decision": "approve"})
        assert back.status_code == 303, back.text
        browser.get(back.headers["location"])


if __name__ == "__main__":
    main(sys.argv[1])
