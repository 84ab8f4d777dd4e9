"""The app in a browser, for the browser tests: the fixtures that start it on a store of its own (one app
per test module), open a fresh page per test (a session of its own) and train or grade the runs a
test needs through the command line, and the helpers that read the chat panes.

A browser test module imports the fixtures it uses:
`from browser_app import app_url, browser, models, page, trained_run  # noqa: F401`"""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from playground import store
from tests_helpers import CHROMIUM_FLAGS, free_port, run_cli, wait_until

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The app's store: runs go to a fresh folder; the converted default model is shared with it, not converted again."""
    models = tmp_path_factory.mktemp("models")
    (models / store.DEFAULT_NAME).symlink_to(store.ensure_default_model(), target_is_directory=True)
    return models


@pytest.fixture(scope="module")
def app_url(models, request):
    port = free_port()
    (ROOT / "artifacts").mkdir(exist_ok=True)
    log = open(ROOT / "artifacts" / f"app-{request.module.__name__}.log", "w")  # a log per test module
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--models-dir", str(models)], cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"

    def app_answers():
        assert process.poll() is None, f"the app exited ({process.returncode}): {Path(log.name).read_text()[-3000:]}"
        try:  # the starting page answers first; wait for the app itself
            return b"Starting&hellip;" not in urllib.request.urlopen(url, timeout=10).read()
        except OSError:
            return False

    try:
        wait_until(app_answers, f"the app on {url} (its output: {log.name})", seconds=600, every=0.5)
    except AssertionError:
        process.kill()
        raise
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh page: a session of its own, with the app's tokenizer loaded."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(app_url)
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=600_000)
    yield page
    context.close()


def train_run(models, model, max_steps=4, lr=0.01) -> str:
    """A LoRA run of `model` through the command line, with the Train tab's preset cut to `max_steps`
    (validation every 2, no probes, no answers scored) and a learning rate at which the tiny model's answers
    change; its id."""
    result = run_cli("train", "--model", model, "--preset", "Quick CPU demo", "--max-steps", str(max_steps),
                     "--lr", str(lr), "--eval-every", "2", "--probes", "0", "--score-answers-every", "0",
                     models_dir=models)
    assert result.returncode == 0, result.stderr[-2000:]
    return Path(result.stdout.strip().splitlines()[-1]).name


@pytest.fixture(scope="module")
def trained_run(models, tiny_model_dir):
    """A finished LoRA run of the tiny model in the app's store, for the tabs that answer, inspect, grade
    or export with one."""
    return train_run(models, tiny_model_dir)


@pytest.fixture(scope="module")
def default_run(models):
    """A finished one-step LoRA run of the embedded default model: its answers stream slowly enough
    on a CPU to type while they come."""
    return train_run(models, "default", max_steps=1, lr=3e-4)


@pytest.fixture
def ungraded_run(models, tiny_model_dir):
    """A run of its own, never graded (no cached judge replies either), the newest in the store."""
    return train_run(models, tiny_model_dir)


@pytest.fixture(scope="module")
def graded_run(models, trained_run):
    """The trained run, graded once through the command line against the Ollama stand-in."""
    from ollama_standin import OllamaStandin

    with OllamaStandin(reply=lambda request: "72") as server:
        result = run_cli("judge", "--run", trained_run, "--limit", "3", "--max-new-tokens", "8", "--host", server.url,
                         models_dir=models)
    assert result.returncode == 0, result.stderr[-2000:]
    return trained_run


def bot_texts(pane):
    return [text.strip() for text in pane.locator("[data-testid='bot']").all_inner_texts()]


def wait_for_answers(page, count, seconds=240):
    """Both panes' answers once each pane holds `count` of them and the text stopped changing (2 s)."""
    left, right = page.locator("#chat-left"), page.locator("#chat-right")
    deadline, last, stable_since = time.monotonic() + seconds, None, time.monotonic()
    while time.monotonic() < deadline:
        now = (bot_texts(left), bot_texts(right))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif len(now[0]) == len(now[1]) == count and all(now[0] + now[1]) and time.monotonic() - stable_since > 2:
            return now
        page.wait_for_timeout(250)
    raise AssertionError(f"the chat did not settle on {count} answers per side: {last}")


def pick(page, dropdown, option):
    """Opens the dropdown `dropdown` (a CSS selector) and picks its first option containing `option`."""
    page.locator(f"{dropdown} input").click()
    page.locator(f"{dropdown} [role=option]").filter(has_text=option).first.click()
