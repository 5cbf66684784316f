"""The web page in a real browser: headless Chromium (Debian's package) driven by Playwright, against a real
server process on 127.0.0.1 (Chroma, the bundled bi-encoder, the test cross-encoder) with bearer tokens, while
an agent writes through a real MCP client.

Skipped, saying why, where Chromium or Playwright is missing (``.ci/run`` installs Chromium). With
``MIMIR_UI_SCREENSHOTS=DIR`` the main views are saved there as PNGs (docs/screenshots holds the ones the
docs show)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mimir_mcp.service.memory import dedup_key

from .conftest import start_http_server, tokens_file

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: pip install -e '.[test]' installs it"
)
CHROMIUM = os.environ.get("MIMIR_TEST_CHROMIUM") or next(
    (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None
)
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium not found: install Debian's chromium package (apt-get install chromium), or set "
        "MIMIR_TEST_CHROMIUM to a Chromium or Chrome binary",
    ),
    pytest.mark.xdist_group("ui_browser"),  # one server and one browser for the module
]

APOLLO = "apollo-0123456789abcdef"  # namespace apollo
READER = "reader-0123456789abcdef"  # apollo and hermes, read-only
ADMIN = "admin-0123456789abcdef"  # every namespace
SHOTS = os.environ.get("MIMIR_UI_SCREENSHOTS")
# The docs' screenshots show the hybrid's own order: the test cross-encoder's scores mean nothing.
RERANK = not SHOTS
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, cross_encoder_path: Path) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("ui-server")
    tokens = tokens_file(
        folder / "tokens.json",
        ("apollo-agent", APOLLO, ["apollo"], False),
        ("reader", READER, ["apollo", "hermes"], True),
        ("admin", ADMIN, ["*"], False),
    )
    env = {"MIMIR_AUTH_TOKENS_FILE": str(tokens), "MIMIR_RERANKER_ENABLED": str(RERANK).lower()}
    process, port = start_http_server("streamable-http", folder / "data", cross_encoder_path, env=env)
    threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (its own session storage); fails the test on any script error in the page, and on
    anything the content security policy blocked (the page must work under it)."""
    context = browser.new_context(viewport={"width": 1280, "height": 820}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
    yield tab
    context.close()
    assert errors == []


def agent(base: str, secret: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call by an agent: the SDK's streamable-HTTP client with its token."""

    async def run() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {secret}"}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
            async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
                result = await client.call_tool(tool, arguments)
                assert not result.is_error, result.content
                return result.structured_content or {}

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(anyio.run, run).result()


def sign_in(page: Any, base: str, secret: str) -> None:
    page.goto(f"{base}/ui/")
    page.fill("#token", secret)
    page.click("#sign-in-form button")
    page.wait_for_selector("body[data-live=on]")  # signed in, and the live stream is open


def shot(page: Any, name: str, tmp_path: Path) -> None:
    folder = Path(SHOTS) if SHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"ui-{name}.png"))


def test_the_token_stays_in_the_tab_never_in_a_url_or_cookie(base: str, page: Any):
    page.goto(f"{base}/ui/")
    page.fill("#token", "wrong-0123456789abcdef")
    page.click("#sign-in-form button")
    page.wait_for_selector("#sign-in-error:has-text('not accepted')")
    sign_in(page, base, APOLLO)
    assert page.inner_text("#who").startswith("token apollo-agent · apollo")
    assert APOLLO not in page.url and page.context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('mimir-token')") == APOLLO
    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('mimir-token')") is None


def test_an_agents_new_memory_appears_without_a_reload(base: str, page: Any, tmp_path: Path):
    agent(
        base,
        APOLLO,
        "remember",
        {"text": "We deploy from the release branch only.", "namespace": "apollo", "agent": "planner"},
    )
    sign_in(page, base, APOLLO)
    page.wait_for_selector("tr.memory")
    page.evaluate("window.notReloaded = true")
    elsewhere = agent(base, ADMIN, "remember", {"text": "Hermes moves to Postgres 17.", "namespace": "hermes"})
    text = "Ana decided the launch moves to March 3 because QA needs another week."
    stored = agent(
        base, APOLLO, "remember", {"text": text, "namespace": "apollo", "agent": "scribe", "tags": ["launch"]}
    )
    row = page.wait_for_selector(f"tr.memory.fresh[data-id='{stored['ids'][0]}']")
    assert text in row.inner_text() and "scribe" in row.inner_text()
    assert page.evaluate("window.notReloaded") is True
    assert page.query_selector(f"tr[data-id='{elsewhere['ids'][0]}']") is None  # another namespace's
    shot(page, "memories", tmp_path)
    agent(base, APOLLO, "forget", {"ids": stored["ids"]})
    page.wait_for_selector(f"tr[data-id='{stored['ids'][0]}']", state="detached")
    # A batch larger than a page is listed afresh: its newest memory shows at the top.
    batch = [{"text": f"Standup note {n}: nothing blocked."} for n in range(30)]
    newest = agent(base, APOLLO, "remember", {"memories": batch, "namespace": "apollo"})["ids"]
    page.wait_for_selector(f"tr.memory[data-id='{newest[-1]}'], tr.memory[data-id='{newest[0]}']")
    assert page.evaluate("window.notReloaded") is True


def test_search_shows_what_each_stage_saw(base: str, page: Any, tmp_path: Path):
    memories = [
        "The billing service retries failed card payments three times, a day apart.",
        "Customers on the annual plan are invoiced in January.",
        "Retry storms took down billing last spring; we added jitter to the retries.",
    ]
    agent(base, APOLLO, "remember", {"memories": [{"text": text} for text in memories], "namespace": "apollo"})
    query = "how often are failed payments retried"
    expected = agent(base, APOLLO, "search", {"query": query, "namespace": "apollo", "explain": True, "top_k": 5})
    sign_in(page, base, APOLLO)
    page.click("nav a[data-view=search]")
    page.fill("#search input[name=query]", query)
    page.fill("#search input[name=top_k]", "5")
    assert (page.query_selector("#search input[name=rerank]") is not None) == RERANK  # offered where it can run
    page.click("#search button[type=submit]")
    page.wait_for_selector("#hits")
    assert page.inner_text("#search-summary .method") == expected["search_method"]
    rows = page.query_selector_all("#hits tr.hit")
    assert [row.query_selector("td.text a").inner_text() for row in rows] == [hit["text"] for hit in expected["hits"]]
    first = rows[0].query_selector_all("td")
    scores = expected["hits"][0]["scores"]
    assert first[3].inner_text().startswith(f"#{scores['dense_rank']} ")  # the dense arm's place
    assert first[7].inner_text() == (f"{scores['rerank_score']:.3f}" if RERANK else "—")  # the cross-encoder's
    assert "Arm weights" in page.inner_text("#search-summary")
    shot(page, "search", tmp_path)


def test_a_memory_is_edited_and_forgotten_with_confirmation(base: str, page: Any, tmp_path: Path):
    old = agent(
        base, APOLLO, "remember", {"text": "The staging database is db-3.", "namespace": "apollo", "agent": "ops"}
    )
    memory_id = old["ids"][0]
    sign_in(page, base, APOLLO)
    page.goto(f"{base}/ui/#/memory/{memory_id}")
    page.wait_for_selector("#memory pre")
    assert "ops" in page.inner_text("#memory dl")
    shot(page, "memory", tmp_path)
    page.fill("#edit textarea[name=text]", "The staging database is db-4 since the move.")
    page.fill("#edit input[name=tags]", "infra, staging")
    page.click("#edit button[type=submit]")
    new_id = dedup_key("apollo", "The staging database is db-4 since the move.")
    page.wait_for_url(re.compile(re.escape(new_id)))
    page.wait_for_selector("#memory pre:has-text('db-4 since the move')")
    assert memory_id in page.inner_text("#memory dl")  # what it replaced
    now = agent(base, APOLLO, "get", {"ids": [new_id, memory_id]})
    assert now["not_found"] == [memory_id] and now["memories"][0]["tags"] == ["infra", "staging"]

    page.click("#forget-one")
    page.wait_for_selector("#confirm[open]")
    assert new_id in page.inner_text("#confirm-text")
    page.click("#confirm-no")
    assert agent(base, APOLLO, "get", {"ids": [new_id]})["memories"]  # cancelled: still there
    page.click("#forget-one")
    page.click("#confirm-yes")
    page.wait_for_url(re.compile(r"#/\?namespace=apollo"))
    assert agent(base, APOLLO, "get", {"ids": [new_id]})["not_found"] == [new_id]


def test_forget_by_filter_counts_first_and_names_the_count(base: str, page: Any, tmp_path: Path):
    notes = [{"text": f"Scratch note {n} from the spike.", "tags": ["scratch"]} for n in range(3)]
    agent(base, APOLLO, "remember", {"memories": notes, "namespace": "apollo"})
    sign_in(page, base, APOLLO)
    page.click("nav a[data-view=data]")
    page.fill("#forget-filter input[name=tag]", "scratch")
    page.click("#forget-filter button[type=submit]")
    page.wait_for_selector("#confirm[open]")
    assert page.inner_text("#confirm-text") == "Forget 3 memories for good?"
    assert page.inner_text("#confirm-yes") == "Forget 3"
    shot(page, "forget", tmp_path)
    page.click("#confirm-yes")
    page.wait_for_selector("#forget-result:has-text('Forgot 3 memories.')")
    assert agent(base, APOLLO, "list_memories", {"namespace": "apollo", "tags": ["scratch"]})["total"] == 0


def test_a_read_only_token_is_offered_no_change(base: str, page: Any):
    stored = agent(base, APOLLO, "remember", {"text": "Readers may look, not touch.", "namespace": "apollo"})
    sign_in(page, base, READER)
    assert "read-only" in page.inner_text("#who")
    page.wait_for_selector("tr.memory")
    page.goto(f"{base}/ui/#/memory/{stored['ids'][0]}")
    page.wait_for_selector("#memory pre")
    assert page.query_selector("#edit") is None and page.query_selector("#forget-one") is None
    assert page.query_selector_all("main button, main textarea") == []  # nothing to press, nothing to edit
    page.click("nav a[data-view=data]")
    page.wait_for_selector("#export")
    assert page.query_selector("#import") is None and page.query_selector("#forget-filter") is None
    assert [button.get_attribute("id") for button in page.query_selector_all("main button")] == ["export"]


def test_a_token_for_one_namespace_never_shows_another(base: str, page: Any):
    secret = agent(base, ADMIN, "remember", {"text": "Hermes payroll runs on the 25th.", "namespace": "hermes"})
    hermes_id = secret["ids"][0]
    sign_in(page, base, APOLLO)
    page.wait_for_selector("#namespaces table")
    assert "hermes" not in page.inner_text("#namespaces") and "hermes" not in page.inner_text("#filters")
    page.goto(f"{base}/ui/#/memory/{hermes_id}")
    page.wait_for_selector("text=Not found")
    assert "payroll" not in page.inner_text("main")
    page.goto(f"{base}/ui/#/?namespace=hermes")
    alert = page.wait_for_selector("#memories [role=alert]")
    assert "may not use namespace 'hermes'" in alert.inner_text()
    page.goto(f"{base}/ui/#/search?query=payroll&namespace=*")
    page.wait_for_selector("#search-summary")
    assert "payroll" not in page.inner_text("#results")


def test_markup_in_a_memory_shows_as_text(base: str, page: Any):
    text = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><b>bold?</b>'
    stored = agent(base, APOLLO, "remember", {"text": text, "namespace": "apollo", "agent": "<i>agent</i>"})
    sign_in(page, base, APOLLO)
    row = page.wait_for_selector(f"tr[data-id='{stored['ids'][0]}']")
    assert text in row.inner_text() and "<i>agent</i>" in row.inner_text()
    page.goto(f"{base}/ui/#/memory/{stored['ids'][0]}")
    assert page.wait_for_selector("#memory pre").inner_text() == text
    assert page.query_selector("#memory img") is None and page.query_selector("#memory b") is None
    assert page.evaluate("window.pwned") is None


def test_import_shows_progress_and_export_downloads(base: str, page: Any, tmp_path: Path):
    lines = [
        json.dumps(
            {
                "id": dedup_key("apollo", text),
                "text": text,
                "namespace": "apollo",
                "agent": "importer",
                "created_at": "2026-11-02T09:00:00+00:00",
            }
        )
        for text in (f"Imported decision {n}: ship the {n}th build." for n in range(250))
    ]
    file = tmp_path / "memories.jsonl"
    file.write_text("\n".join(lines) + "\n")
    sign_in(page, base, APOLLO)
    page.click("nav a[data-view=data]")
    page.set_input_files("#import-file", str(file))
    page.click("#import")
    page.wait_for_selector("#import-result:has-text('250 read, 250 stored, 0 already present')", timeout=120_000)
    assert page.evaluate("document.getElementById('import-progress').value") == 250
    shot(page, "import", tmp_path)
    with page.expect_download() as download:
        page.click("#export")
    saved = tmp_path / "export.jsonl"
    download.value.save_as(saved)
    exported = [json.loads(line) for line in saved.read_text().splitlines()]
    assert download.value.suggested_filename == "mimir-apollo.jsonl"
    assert {json.loads(line)["id"] for line in lines} <= {memory["id"] for memory in exported}


def test_status_shows_models_and_store(base: str, page: Any, tmp_path: Path):
    sign_in(page, base, ADMIN)
    page.click("nav a[data-view=status]")
    status = page.wait_for_selector("#status")
    for part in ["embedding", "reranker", "store", "bm25", *(["queue"] if RERANK else [])]:
        assert part in status.inner_text()
    shot(page, "status", tmp_path)


def test_another_site_cannot_frame_the_page(base: str, browser: Any):
    context = browser.new_context()
    tab = context.new_page()
    blocked: list[str] = []
    tab.on("console", lambda message: blocked.append(message.text))
    tab.set_content(f'<iframe id="framed" src="{base}/ui/"></iframe>')
    frame = tab.wait_for_selector("#framed").content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    # Chromium refuses to render it (frame-ancestors 'none'): no sign-in form, an error page instead.
    assert frame.query_selector("#sign-in-form") is None
    assert any("frame-ancestors" in text or "X-Frame-Options" in text for text in blocked)
    context.close()


def test_the_list_filters_by_agent_tag_and_time(base: str, page: Any):
    old_text = "Archived: the 2025 roadmap was approved."
    line = {
        "id": dedup_key("apollo", old_text),
        "text": old_text,
        "namespace": "apollo",
        "agent": "archivist",
        "tags": ["old"],
        "created_at": "2025-06-10T10:00:00+00:00",
    }
    imported = httpx.post(
        f"{base}/ui/api/import",
        content=json.dumps(line),
        headers={"Authorization": f"Bearer {APOLLO}", "Content-Type": "application/x-ndjson"},
    )
    assert imported.json()["stored"] == 1
    new = agent(
        base,
        APOLLO,
        "remember",
        {"text": "Fresh: the 2027 roadmap is drafted.", "namespace": "apollo", "agent": "archivist", "tags": ["new"]},
    )
    sign_in(page, base, APOLLO)

    def shows(expected: list[str]) -> bool:
        """Whether the list comes to hold exactly ``expected``, in order (it reloads after the hash changes)."""
        script = (
            "ids => JSON.stringify([...document.querySelectorAll('tr.memory')].map(row => row.dataset.id))"
            " === JSON.stringify(ids)"
        )
        page.wait_for_function(script, arg=expected)
        return [row.get_attribute("data-id") for row in page.query_selector_all("tr.memory")] == expected

    page.fill("#filters input[name=agent]", "archivist")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"agent=archivist"))
    assert shows([new["ids"][0], line["id"]])  # newest first
    page.fill("#filters input[name=when]", "in June 2025")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"when=in"))
    assert shows([line["id"]])
    page.fill("#filters input[name=when]", "")
    page.fill("#filters input[name=tag]", "new")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"tag=new$"))
    assert shows([new["ids"][0]])
