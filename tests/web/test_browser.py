"""The console in a real browser (Playwright driving Debian's Chromium) against a real
``atrium start`` with the four built-in servers: the walk of issue 16's "Done when", a
screenshot of every page at desktop and phone size (``tests/artifacts/``), no Content Security
Policy violation, and axe-core's accessibility check on every page."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import OpenAIChatFake, text, tool_call
from tests.e2e.instance import Instance, started_instance

BUILTINS = ("atrium", "soul", "content-manager", "marketplace")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
AXE = Path(__file__).resolve().parents[2] / ".cache/npm/node_modules/axe-core/axe.min.js"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
READER_PASSWORD = "reader-password-for-the-walk"

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (scripts/system-deps)"
)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    # The gateway reads the model API key of the agents' provider fake from its environment.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VARIABLE, "sk-test")
        with started_instance(tmp_path_factory.mktemp("console"), builtins=BUILTINS) as running:
            yield _with_reader(running)


def _with_reader(running: Instance) -> Instance:
    running.atrium(
        "admin",
        "users",
        "create",
        "rita",
        "--role",
        "reader",
        "--password-stdin",
        stdin=READER_PASSWORD + "\n",
    )
    return running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


class Watched:
    """A browser context whose pages report every CSP violation they meet."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.violations: list[str] = []

    async def page(self) -> Page:
        page = await self.context.new_page()
        page.on(
            "console",
            lambda message: (
                self.violations.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        return page


async def _context(browser: Browser, size: str = "desktop") -> Watched:
    width, height = SIZES[size]
    return Watched(await browser.new_context(viewport={"width": width, "height": height}))


async def sign_in(page: Page, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/admin")
    await page.get_by_label(re.compile("user name", re.I)).fill(username)
    await page.get_by_label(re.compile("password", re.I)).fill(password)
    await page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    await page.get_by_role("button", name="Allow").click()
    await expect(page.get_by_role("heading", name="Servers")).to_be_visible()


async def check_page(page: Page, name: str) -> None:
    """A screenshot at both sizes, and no serious accessibility violation (axe-core)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for size, (width, height) in SIZES.items():
        await page.set_viewport_size({"width": width, "height": height})
        await page.screenshot(path=ARTIFACTS / f"console-{name}-{size}.png", full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.evaluate(AXE.read_text(encoding="utf-8"))
    found = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    assert found == [], f"{name}: {found}"


async def test_an_admin_walks_the_console(instance: Instance, browser: Browser) -> None:
    watched = await _context(browser)
    page = await watched.page()
    await sign_in(page, instance.base, "admin", instance.password)

    rows = page.locator("#server-rows tr[data-server]")
    await expect(rows).to_have_count(4)
    assert sorted(await rows.evaluate_all("rows => rows.map(r => r.dataset.server)")) == sorted(
        BUILTINS
    )
    await check_page(page, "dashboard")

    await page.get_by_role("link", name="soul", exact=True).click()
    status = page.locator("#status")
    await expect(status.locator("[data-field=state]")).to_have_text("running")
    before = await status.locator("[data-field=pid]").inner_text()
    await page.evaluate("window.notReloaded = true")
    await page.get_by_role("button", name="Restart").click()
    # A restart asked for is no crash: the count of restarts stays, the process is new.
    await expect(status.locator("[data-field=pid]")).not_to_have_text(before, timeout=60_000)
    await expect(status.locator("[data-field=state]")).to_have_text("running", timeout=60_000)
    assert await page.evaluate("window.notReloaded === true")  # it changed live
    await check_page(page, "server")

    cursor = await page.locator("#add-to-cursor").get_attribute("href")
    assert cursor is not None
    query = parse_qs(urlsplit(cursor).query)
    assert query["name"] == ["soul"]
    assert json.loads(base64.b64decode(query["config"][0])) == {
        "url": f"{instance.base}/api/v1/mcp/soul/mcp"
    }

    await page.goto(f"{instance.base}/admin/servers/atrium")
    tool = page.locator("article[data-tool=list_playbooks]")
    await tool.get_by_role("button", name="Call list_playbooks").click()
    await expect(tool.locator("[data-outcome=ok]")).to_be_visible(timeout=30_000)
    await tool.get_by_role("link", name="Its audit record").click()
    await expect(page.locator("[data-field=tool]")).to_have_text("list_playbooks")
    await check_page(page, "audit-record")

    await page.goto(f"{instance.base}/admin/audit?server=atrium&tool=list_playbooks")
    await expect(page.locator("tr[data-request]").first).to_be_visible()
    await check_page(page, "audit")
    await page.goto(f"{instance.base}/admin/usage")
    await expect(page.locator("svg.chart").first).to_be_visible()
    await check_page(page, "usage")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("main[data-state=signed-out]")).to_be_visible()
    await check_page(page, "signed-out")
    assert watched.violations == []


async def test_a_reader_sees_no_restart_and_is_refused_when_posting_it(
    instance: Instance, browser: Browser
) -> None:
    watched = await _context(browser, "phone")
    page = await watched.page()
    await sign_in(page, instance.base, "rita", READER_PASSWORD)
    await page.goto(f"{instance.base}/admin/servers/soul")

    await expect(page.get_by_role("heading", name="soul")).to_be_visible()
    await expect(page.get_by_role("button", name="Restart")).to_have_count(0)
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    answer = await page.request.post(
        f"{instance.base}/admin/servers/soul/restart", form={"csrf": csrf or ""}
    )
    assert answer.status == 403
    assert 'data-error="forbidden"' in await answer.text()
    assert watched.violations == []


PLAYBOOKS = "mcp__atrium__list_playbooks"
SECRET_VALUE = "walk-secret-value-0123456789"
SKILL = "---\nname: walk-skill\ndescription: A skill made in the browser walk.\n---\nSay hi.\n"


async def test_an_admin_chats_edits_a_skill_sets_a_secret_and_creates_a_user(
    instance: Instance, browser: Browser
) -> None:
    script = [tool_call(PLAYBOOKS, {}), text("There are no playbooks yet.")]
    with OpenAIChatFake(script) as fake:
        write_ai_config(instance.project, fake)
        write_agent(instance.project, "helper", allowed_tools=["mcp__atrium__*"])
        watched = await _context(browser)
        page = await watched.page()
        await sign_in(page, instance.base, "admin", instance.password)

        await page.get_by_role("link", name="Agents", exact=True).click()
        await page.get_by_role("link", name="helper").click()
        await page.get_by_label("Message").fill("Which playbooks are there?")
        await page.get_by_role("button", name="Send").click()
        transcript = page.locator("#transcript")
        await expect(transcript.locator(".call[data-state=ok]")).to_have_count(1, timeout=60_000)
        await expect(transcript).to_have_attribute("data-run", "finished", timeout=60_000)
        await expect(transcript.locator(".message.assistant .text")).to_have_text(
            "There are no playbooks yet."
        )
        await check_page(page, "chat")
        await page.get_by_role("link", name="Agents", exact=True).click()
        await expect(page.locator("tr[data-conversation]")).to_have_count(1)
        await check_page(page, "agents")

    await page.get_by_role("link", name="Skills", exact=True).click()
    await page.get_by_label("SKILL.md").fill(SKILL)
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("[data-analysis]")).to_be_visible()
    await page.get_by_role("textbox", name="SKILL.md (changes version 1)").fill(
        SKILL.replace("Say hi.", "Say hello.")
    )
    await page.get_by_role("button", name="Save version 2").click()
    await expect(page.locator("[data-field=version]")).to_have_text("2")
    await check_page(page, "skill")
    await page.get_by_role("link", name="Skills", exact=True).click()
    await check_page(page, "skills")

    await page.get_by_role("link", name="Secrets", exact=True).click()
    await page.get_by_label("Name").fill("WALK_TOKEN")
    await page.get_by_label("Value").fill(SECRET_VALUE)
    await page.get_by_role("button", name="Set").click()
    await expect(page.locator("tr[data-secret=WALK_TOKEN]")).to_be_visible()
    assert SECRET_VALUE not in await page.content()
    await check_page(page, "secrets")

    await page.get_by_role("link", name="Users", exact=True).click()
    await page.get_by_label("User name").fill("walker")
    await page.get_by_label("Role", exact=True).select_option("reader")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("[data-field=password]")).to_be_visible()
    await expect(page.locator("tr[data-user=walker]")).to_be_visible()
    await check_page(page, "users")
    await page.get_by_role("link", name="Clients", exact=True).click()
    await check_page(page, "clients")

    await page.get_by_role("link", name="Audit", exact=True).click()
    await page.get_by_label("Tool").fill("list_playbooks")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr[data-request]").first).to_be_visible()
    assert "tool=list_playbooks" in page.url
    await page.get_by_role("link", name="Usage", exact=True).click()
    await expect(page.locator("figure.timechart").first).to_be_visible()
    await check_page(page, "usage-over-time")
    assert watched.violations == []
