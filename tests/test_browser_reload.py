"""A reload, as people do one in the middle of their work: what they typed, picked, read or started is
still there afterwards (the browser keeps their settings; the app keeps what it is doing)."""

import re
import threading
import time

import pytest
from playwright.sync_api import expect

from browser_app import (SHOTS, app_url, bot_texts, browser, models, page, pick, trained_run,  # noqa: F401
                         wait_for_answers)
from tests_helpers import wait_until

pytestmark = pytest.mark.slow


def reload(page):
    page.reload()
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=600_000)


def stored_settings_change(page, action, quiet_ms=1500):
    """Does `action`, then waits until the browser's stored settings changed and stayed the same for
    `quiet_ms`: every write the action caused (one per field event) has reached the browser."""
    stored = "() => localStorage.getItem('instruction-tuning-playground')"
    before = page.evaluate(stored)
    action()
    page.wait_for_function(f"before => ({stored})() !== before", arg=before)
    last, since = page.evaluate(stored), time.monotonic()
    while time.monotonic() - since < quiet_ms / 1000:
        page.wait_for_timeout(100)
        now = page.evaluate(stored)
        if now != last:
            last, since = now, time.monotonic()


def test_a_reload_keeps_the_judge_server_and_the_prompt_style(page):
    page.get_by_role("tab", name="Prompt styles").click()
    page.locator("#prompt-style").get_by_text("Custom").click()
    page.locator("#custom-template textarea").fill("Q: {instruction}\nA: {output}")
    page.locator("#custom-template textarea").blur()
    expect(page.locator("#training-view")).to_contain_text("A: ")
    page.get_by_role("tab", name="Judge").click()
    host = page.locator("#judge-host input, #judge-host textarea").first
    stored_settings_change(page, lambda: (host.fill("http://127.0.0.1:9"), host.press("Enter")))
    model = page.locator("#judge-model input, #judge-model textarea").first
    stored_settings_change(page, lambda: (model.fill("llama3:70b"), model.press("Enter")))
    reload(page)
    page.get_by_role("tab", name="Judge").click()
    expect(page.locator("#judge-host input, #judge-host textarea").first).to_have_value("http://127.0.0.1:9")
    expect(page.locator("#judge-model input, #judge-model textarea").first).to_have_value("llama3:70b")
    page.get_by_role("tab", name="Prompt styles").click()
    expect(page.locator("#prompt-style").get_by_label("Custom")).to_be_checked()
    expect(page.locator("#custom-template textarea")).to_have_value("Q: {instruction}\nA: {output}")
    expect(page.locator("#training-view")).to_contain_text("A: ")  # the session uses it, not just shows it


def test_a_reload_keeps_the_conversation_and_the_inspected_example(trained_run, page):
    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#chat-run-info")).to_contain_text(f"Run {trained_run}")
    page.locator("#chat-settings").get_by_text("Generation settings").click()
    page.locator("#chat-max-new input[type=number]").fill("8")
    page.locator("#chat-max-new input[type=number]").press("Enter")
    for count, message in enumerate(("Name a primary color.", "What is the capital of Japan?"), start=1):
        page.locator("#chat-message textarea").fill(message)
        page.locator("#chat-send").click()
        left, right = wait_for_answers(page, count)

    page.get_by_role("tab", name="Inspect").click()
    pick(page, "#inspect-example", "2 · record")
    example = page.locator("#inspect-example input").input_value()
    assert example.startswith("2 · record")
    page.locator("#inspect-go").click()
    expect(page.locator("#inspect-message")).to_contain_text("answer tokens", timeout=180_000)
    summary = page.locator("#inspect-summary").inner_text()

    reload(page)
    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#chat-left")).to_contain_text("What is the capital of Japan?")
    assert (bot_texts(page.locator("#chat-left")), bot_texts(page.locator("#chat-right"))) == (left, right)
    expect(page.locator("#chat-run input")).to_have_value(re.compile(trained_run))
    page.locator("#chat-message textarea").fill("And of France?")  # the conversation goes on from there
    page.locator("#chat-send").click()
    now_left, _ = wait_for_answers(page, 3)
    assert now_left[:2] == left
    page.screenshot(path=str(SHOTS / "chat-after-reload.png"), full_page=True)

    page.get_by_role("tab", name="Inspect").click()
    expect(page.locator("#inspect-example input")).to_have_value(example)
    expect(page.locator("#inspect-message")).to_contain_text("answer tokens", timeout=180_000)
    expect(page.locator("#inspect-summary")).to_contain_text("answer loss, base → tuned")
    assert page.locator("#inspect-summary").inner_text() == summary  # the same example, read again
    page.screenshot(path=str(SHOTS / "inspect-after-reload.png"), full_page=True)

    page.get_by_role("tab", name="Chat").click()
    stored_settings_change(page, lambda: page.locator("#chat-clear").click())  # a cleared conversation stays cleared
    expect(page.locator("#chat-left [data-testid='bot']")).to_have_count(0)
    reload(page)
    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#chat-run-info")).to_contain_text(f"Run {trained_run}")
    expect(page.locator("#chat-left [data-testid='bot']")).to_have_count(0)


def test_a_reload_shows_an_export_still_running_and_its_result_when_it_ends(trained_run, page):
    from ollama_standin import OllamaStandin

    gate = threading.Event()  # the server holds the model's creation until the test lets it go
    with OllamaStandin(create_gate=gate) as server:
        try:
            page.get_by_role("tab", name="Export").click()
            pick(page, "#export-run", trained_run)
            page.locator("#export-format").get_by_text("Ollama model", exact=True).click()
            page.locator("#export-host input, #export-host textarea").first.fill(server.url)
            page.locator("#export-parity-count input[type=number]").fill("1")
            page.locator("#export-parity-count input[type=number]").press("Enter")
            page.locator("#export-start").click()
            # the parity check is done and the file uploaded: the model's creation waits at the gate
            wait_until(lambda: server.blobs, "the export's upload to the Ollama stand-in", seconds=300, every=0.25)
            reload(page)
            page.get_by_role("tab", name="Export").click()
            pick(page, "#export-run", trained_run)
            running = page.locator("#export-running")
            expect(running).to_contain_text(f"Run {trained_run} is being exported as ollama", timeout=30_000)
            page.screenshot(path=str(SHOTS / "export-running-after-reload.png"), full_page=True)
            page.locator("#export-start").click()  # a second export of the same run waits for the first
            expect(page.locator("#export-message")).to_contain_text("is being exported already")
        finally:
            gate.set()
        expect(running).to_be_hidden(timeout=120_000)
        expect(page.locator("#export-message")).to_contain_text("The last export of this run", timeout=30_000)
        expect(page.locator("#export-message")).to_contain_text("ollama")
