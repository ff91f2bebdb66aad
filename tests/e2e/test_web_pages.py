"""The chat page (/) and the status page (/status) in a real headless Chromium (Debian's `chromium`,
driven by Playwright through executable_path; `make test` installs it) against the real server.

Screenshots of both pages at desktop and phone width go to $ENGINEHOUSE_SCREENSHOTS when it is set
(`make screenshots` sets it to docs/screenshots), else to the test's temporary directory.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.server import start_server, stop_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MODEL = "smollm2-135m-instruct"
# as the machine's closed network needs: no background connections, no sandbox as root
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
LAST_ANSWER = "[...document.querySelectorAll('.message.assistant .body')].pop()"
FINISHED = "[...document.querySelectorAll('.message.assistant .stats')].pop().innerText.includes('finish')"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: make test installs it (apt-get, as root)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    where = os.environ.get("ENGINEHOUSE_SCREENSHOTS")
    folder = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(page: Page, expression: str, timeout: float = 60) -> None:
    """Poll a JS expression from here: Playwright's wait_for_function compiles its predicate with
    eval, which the pages' Content-Security-Policy forbids (as it should)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        assert time.monotonic() < deadline, f"not within {timeout} s: {expression}"
        time.sleep(0.1)


def status(server, model=MODEL):
    return httpx.get(f"{server.url}/v1/models/status", timeout=10).json()["data"]


def model_status(server, model=MODEL):
    return next(m for m in status(server) if m["id"] == model)


def open_chat(page: Page, server, max_tokens: int) -> None:
    page.goto(f"{server.url}/")
    wait_for(page, f"document.querySelector('#model option[value=\"{MODEL}\"]') !== null")
    page.select_option("#model", MODEL)
    page.fill("#max_tokens", str(max_tokens))
    page.fill("#temperature", "0")


def last_answer(page: Page) -> str:
    return page.locator(".message.assistant .body").last.inner_text()


def test_a_question_is_answered_in_streamed_pieces_with_its_speed_under_it(page, server, shots):
    open_chat(page, server, 96)
    page.fill("#prompt", "Write a short story about a cat who learns to fly.")
    page.click("#send")
    lengths = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lengths.append(len(page.locator(".message.assistant .body").last.inner_text()))
        if "finish" in page.locator(".message.assistant .stats").last.inner_text():
            break
        time.sleep(0.05)
    seen = sorted(set(lengths))
    assert len(seen) >= 4, f"the answer appeared at once, not in pieces: {seen}"
    stats = page.locator(".message.assistant .stats").last.inner_text()
    assert "tokens/s" in stats and "first token" in stats and "finish: length" in stats
    assert page.locator(".message.user").last.inner_text().startswith("Write a short story")
    # kept in localStorage: a reload shows the conversation again
    page.reload()
    page.wait_for_selector(".message.assistant")
    assert last_answer(page).strip()
    page.screenshot(path=str(shots / "chat-desktop.png"))
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(shots / "chat-phone.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1  # no sideways scroll


def test_stop_aborts_the_fetch_and_the_server_cancels_the_generation(page, server):
    open_chat(page, server, 2000)
    page.fill("#prompt", "Tell me a very long story about the sea, with many chapters.")
    cancelled = model_status(server)["cancelled"]
    page.click("#send")
    wait_for(page, LAST_ANSWER + ".innerText.length > 20")
    page.click("#stop")
    stopped_at = time.monotonic()
    while time.monotonic() - stopped_at < 2.0:
        now = model_status(server)
        if now["cancelled"] > cancelled and now["running"] == 0:
            break
        time.sleep(0.1)
    now = model_status(server)
    assert now["cancelled"] > cancelled and now["running"] == 0, now
    generated = now["tokens_generated"]
    time.sleep(0.5)
    assert model_status(server)["tokens_generated"] == generated  # nothing more is generated
    assert "stopped" in page.locator(".message.assistant .stats").last.inner_text()
    assert not page.is_disabled("#send") and page.is_disabled("#stop")


MARKUP = '<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2">'
# earlier turns of the conversation, kept in the browser: they teach the model to repeat markup
REPEATING = [
    {"role": "user", "content": "Repeat: hello world"},
    {"role": "assistant", "content": "hello world"},
    {"role": "user", "content": "Repeat: <b>bold</b> <script>x()</script>"},
    {"role": "assistant", "content": "<b>bold</b> <script>x()</script>"},
    # without an <img> turn, SmolLM2 (greedy, the GGUF's exact weights) dropped the <img> part
    {"role": "user", "content": 'Repeat: <i>hi</i> <img src=y onerror="z()">'},
    {"role": "assistant", "content": '<i>hi</i> <img src=y onerror="z()">'},
]


def keep_conversation(page: Page, messages: list[dict]) -> None:
    page.evaluate(
        """messages => {
        localStorage.setItem('enginehouse.conversations', JSON.stringify([{id: 'x', title: 'x', messages}]));
        localStorage.setItem('enginehouse.current', 'x');
    }""",
        messages,
    )
    page.reload()


def test_html_in_a_models_answer_shows_as_text_and_never_runs(page, server):
    """Taught by the kept turns, the model (greedy) repeats <script> and <img onerror> markup in its
    answer; the page shows it as text, and nothing of it runs."""
    open_chat(page, server, 60)
    keep_conversation(page, REPEATING)
    page.wait_for_selector(".message.assistant")
    open_chat(page, server, 60)
    page.fill("#prompt", f"Repeat: {MARKUP}")
    page.click("#send")
    wait_for(page, FINISHED)
    answer = page.locator(".message.assistant .body").last
    text = answer.inner_text()
    assert "<script>" in text and "<img" in text, f"the model did not repeat the markup: {text!r}"
    assert answer.locator("script, img").count() == 0
    assert page.evaluate("() => window.pwned") is None
    # markup in a kept answer, beside a code block, renders the same way
    keep_conversation(page, [REPEATING[0], {"role": "assistant", "content": MARKUP + "\n\n```\ncode()\n```"}])
    page.wait_for_selector(".message.assistant pre code")
    body = page.locator(".message.assistant .body").last
    assert body.locator("script, img").count() == 0 and "<img" in body.inner_text()
    assert page.evaluate("() => window.pwned") is None
    policy = httpx.get(f"{server.url}/", timeout=10).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy


def test_the_status_page_shows_the_model_and_its_tokens_chart_moves_under_a_bench(page, server, shots):
    page.goto(f"{server.url}/status")
    page.wait_for_selector(f'#models tr[data-model="{MODEL}"]')
    row = page.locator(f'#models tr[data-model="{MODEL}"]').inner_text()
    assert "ready" in row and "openvino" in row
    before = page.evaluate("document.getElementById('tps').toDataURL()")
    bench = subprocess.Popen(
        [sys.executable, "-m", "gateway", "bench", "--url", server.url, "--model", MODEL,
         "--concurrency", "4", "--num-requests", "8", "--max-tokens", "96", "--no-progress"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(page, "Number(document.getElementById('tps-now').dataset.value || 0) > 5")
        running = page.locator(f'#models tr[data-model="{MODEL}"] td').nth(5).inner_text()
        assert int(running) > 0
        time.sleep(4)  # a few seconds of the charts for the screenshots
        assert page.evaluate("document.getElementById('tps').toDataURL()") != before
        page.screenshot(path=str(shots / "status-desktop.png"))
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(shots / "status-phone.png"))
    finally:
        assert bench.wait(timeout=180) == 0


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """Only the gateway matters here: a server of the test engine, with a key and an admin key."""
    models = tmp_path_factory.mktemp("keyed") / "models.toml"
    models.write_text('[echo]\nsource = "none"\nengine = "test"\n')
    server = start_server("--models", str(models), "--api-key", "user", "--admin-api-key", "boss", key="boss")
    yield server
    stop_server(server)


def test_a_refused_key_is_a_clear_message_and_a_good_one_chats(page, keyed):
    page.goto(f"{keyed.url}/")
    page.wait_for_selector("#notice:not([hidden])")
    assert "API key (401)" in page.inner_text("#notice") and page.is_visible("#key")
    page.fill("#key", "wrong")
    page.click("#key-save")
    wait_for(page, "document.getElementById('notice').innerText.includes('(401)')")
    page.fill("#key", "user")
    page.click("#key-save")
    page.wait_for_selector('#model option[value="echo"]', state="attached")
    assert page.is_hidden("#notice")
    page.fill("#prompt", "hello")
    page.click("#send")
    wait_for(page, FINISHED)
    assert "tok" in last_answer(page)
    # the status page needs the admin key: the ordinary one is refused in words
    page.goto(f"{keyed.url}/status")
    wait_for(page, "document.getElementById('notice').innerText.includes('(403)')")
    page.fill("#key", "boss")
    page.click("#key-save")
    page.wait_for_selector('#models tr[data-model="echo"]')


def test_no_web_turns_the_pages_off():
    models = Path(os.environ.get("TMPDIR", "/tmp")) / f"no-web-{os.getpid()}.toml"
    models.write_text('[echo]\nsource = "none"\nengine = "test"\n')
    server = start_server("--models", str(models), "--no-web")
    try:
        assert httpx.get(f"{server.url}/", timeout=10).status_code == 404
        assert httpx.get(f"{server.url}/status", timeout=10).status_code == 404
        assert httpx.get(f"{server.url}/static/chat.js", timeout=10).status_code == 404
    finally:
        stop_server(server)
        models.unlink()


def test_regenerate_and_edit_last(page, keyed):
    page.goto(f"{keyed.url}/")
    page.fill("#key", "user")
    page.click("#key-save")
    page.wait_for_selector('#model option[value="echo"]', state="attached")
    page.fill("#max_tokens", "5")
    page.fill("#prompt", "first question")
    page.click("#send")
    wait_for(page, FINISHED)
    page.click("#regenerate")  # the last answer goes, a new one comes for the same question
    wait_for(page, FINISHED + " && !document.getElementById('send').disabled")
    assert page.locator(".message.user").count() == 1 and page.locator(".message.assistant").count() == 1
    page.click("#edit-last")  # the question comes back to the box, its answer goes
    assert page.input_value("#prompt") == "first question"
    assert page.locator(".message").count() == 0
