"""``answer_from_content`` in-process (``tests.servers.soul_client``): posts of two users in
the project's real SQLite store, the playbooks ``atrium init`` wrote, the project's model as a
provider fake or the client's own through sampling. Retrieval decides "not found" before any
model is asked; what the model is given is only what the caller may read."""

from __future__ import annotations

from mcp.types import TextContent

from atrium.servers.soul.answers import NOT_FOUND_TEXT
from atrium.servers.soul.prompts import delimited
from atrium.settings import Settings
from atrium.store import Store
from tests.ai.project import write_ai_config
from tests.ai.providers_fake import AnthropicFake, text
from tests.servers.soul_client import Sampler, failed, sent, soul, structured, with_key

QUESTION = "How do deploys reach the gateway?"
GUIDE = "Deploys reach the gateway through a rolling restart of each backend."
NOTES = "My notes: deploys of the gateway happen on Tuesdays."
SECRET = "Bob's draft: deploys reach the gateway through the secret back door."


async def write_posts(settings: Settings) -> None:
    """bob's published guide (shared), ada's own draft, bob's draft (his alone)."""
    async with await Store.open(settings) as store:
        posts = store.content
        await posts.save_post(
            owner="bob", slug="deploy-guide", title="Deploy guide", body=GUIDE, status="published"
        )
        await posts.save_post(owner="ada", slug="ada-notes", title="Notes", body=NOTES)
        await posts.save_post(owner="bob", slug="bob-draft", title="Draft", body=SECRET)


async def test_nothing_found_is_said_by_code_and_no_model_is_asked(project: Settings) -> None:
    settings = with_key(project)
    await write_posts(settings)
    sampler = Sampler()
    with AnthropicFake([text("made up")]) as fake:
        write_ai_config(settings.project_dir, fake)
        async with soul(settings, sampling=sampler) as client:
            result = await client.call_tool(
                "answer_from_content", {"question": "zebra quantum flux"}
            )
    assert structured(result) == {
        "found": False,
        "answer": NOT_FOUND_TEXT,
        "sources": [],
        "model": None,
    }
    assert fake.requests == []
    assert sampler.asked == []


async def test_the_answer_cites_its_sources_from_what_the_caller_may_read(
    project: Settings,
) -> None:
    settings = with_key(project)
    await write_posts(settings)
    answer = "Through a rolling restart of each backend [deploy-guide]."
    with AnthropicFake([text(answer)]) as fake:
        write_ai_config(settings.project_dir, fake)
        async with soul(settings, subject="ada") as client:
            result = await client.call_tool("answer_from_content", {"question": QUESTION})
    content = structured(result)
    assert content["found"] is True
    assert content["answer"] == answer
    sources = {source["key"]: source for source in content["sources"]}
    posts = {key for key, source in sources.items() if source["kind"] == "post"}
    assert posts == {"deploy-guide", "ada-notes"}  # bob's draft is bob's alone
    assert sources["deploy-guide"]["cited"] is True
    assert sources["ada-notes"]["cited"] is False
    prompt = sent(fake.requests[0].body["messages"])
    assert delimited(QUESTION, "QUESTION") in prompt
    assert delimited(f"Deploy guide\n{GUIDE}", "SOURCE", "key=deploy-guide") in prompt
    assert "secret back door" not in prompt
    shown = result.content[0]
    assert isinstance(shown, TextContent)
    assert "[deploy-guide] Deploy guide" in shown.text


async def test_a_model_that_finds_no_answer_in_the_sources_is_not_found(
    project: Settings,
) -> None:
    await write_posts(project)
    sampler = Sampler("NOT_FOUND", model="client-llm")
    async with soul(project, subject="bob", sampling=sampler) as client:
        result = await client.call_tool("answer_from_content", {"question": QUESTION})
    content = structured(result)
    assert (content["found"], content["answer"]) == (False, NOT_FOUND_TEXT)
    posts = {source["key"] for source in content["sources"] if source["kind"] == "post"}
    assert posts == {"deploy-guide", "bob-draft"}
    assert not any(source["cited"] for source in content["sources"])
    assert content["model"]["via"] == "sampling"
    assert "secret back door" in sampler.user_text()  # his own draft is his to read


async def test_playbooks_on_disk_are_sources(project: Settings) -> None:
    sampler = Sampler("Work from the configuration to the log [troubleshoot-a-server].")
    async with soul(project, sampling=sampler, mode="legacy") as client:
        result = await client.call_tool(
            "answer_from_content", {"question": "troubleshoot a server that does not start"}
        )
    sources = {source["key"]: source for source in structured(result)["sources"]}
    assert sources["troubleshoot-a-server"]["kind"] == "playbook"
    assert sources["troubleshoot-a-server"]["cited"] is True
    assert "Work from the configuration to the process to the log" in sampler.user_text()


async def test_an_anonymous_caller_is_refused(project: Settings) -> None:
    await write_posts(project)
    async with soul(project, subject=None, sampling=Sampler()) as client:
        message = failed(await client.call_tool("answer_from_content", {"question": QUESTION}))
    assert "signed-in" in message


async def test_a_question_out_of_bounds_names_the_argument(project: Settings) -> None:
    sampler = Sampler()
    async with soul(project, sampling=sampler) as client:
        long = failed(await client.call_tool("answer_from_content", {"question": "q" * 2_001}))
        empty = failed(await client.call_tool("answer_from_content", {"question": " "}))
        limit = failed(
            await client.call_tool("answer_from_content", {"question": QUESTION, "limit": 0})
        )
    assert "'question'" in long
    assert "2,000" in long
    assert "'question' is empty" in empty
    assert "limit" in limit
    assert sampler.asked == []
