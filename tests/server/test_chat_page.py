"""The chat page in a real headless browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_anthropic import slow, text
from test_server_harness import ThreadServer, upstream_env, write_bot

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GREETING = "Hi! What shall we learn today?"


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing under CI: install Debian's chromium package")
        pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_chat_page_streams_remembers_and_resets(browser, tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    path = write_bot(tmp_path, extra=f"description: A patient tutor\ngreeting: {GREETING}\n")
    reply = "Fractions are parts of a whole."
    fake_anthropic.enqueue(slow(text(reply), token_delay=0.15))
    with ThreadServer(path, tmp_path / "bots.db") as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.locator(".msg.bot", has_text=GREETING).wait_for()
        assert page.locator("#bot-name").inner_text() == "tutor"
        assert page.locator("#bot-description").inner_text() == "A patient tutor"

        page.fill("#input", "What are fractions?")
        page.press("#input", "Enter")
        # Streamed: part of the reply shows while the rest is still coming.
        page.wait_for_function(
            "() => { const t = document.querySelector('.msg.bot.streaming .text');"
            " return t && t.textContent.length > 0; }",
            timeout=5000,
        )
        page.locator(".msg.bot:not(.streaming)", has_text=reply).wait_for(timeout=10000)
        assert page.locator(".msg.user").inner_text() == "What are fractions?"

        # The conversation is stored: a reload shows it again, without the greeting.
        page.reload()
        page.locator(".msg.bot", has_text=reply).wait_for()
        assert page.locator(".msg.greeting").count() == 0

        # Reset forgets it and shows the greeting again.
        page.click("#reset")
        page.locator(".msg.greeting", has_text=GREETING).wait_for()
        assert page.locator(".msg.user").count() == 0
        assert page.locator("#error").is_hidden()
        # No API keys are configured: nothing asks for one.
        assert page.locator("#key-form").is_hidden()


def test_chat_page_says_what_to_set_without_a_key(browser, tmp_path, monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    with ThreadServer(write_bot(tmp_path), tmp_path / "bots.db") as srv:
        page = browser.new_page()
        page.goto(srv.url + "/")
        error = page.locator("#error")
        error.wait_for()
        assert "ANTHROPIC_API_KEY" in error.inner_text()
        page.fill("#input", "hello?")
        page.click("#send")
        page.locator(".msg.bot.failed .problem", has_text="ANTHROPIC_API_KEY").wait_for()
