"""Chapter 7's bonus in the browser, as a learner goes through it: a preference dataset loaded, a DPO
run started in the Train tab from a supervised run, its reward margins drawn live, then the supervised
and the DPO model answering side by side in the Chat tab."""

import re

import pytest
from browser_app import SHOTS, app_url, browser, models, page, pick, trained_run, wait_for_answers  # noqa: F401
from playwright.sync_api import expect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_dpo_run_from_a_supervised_run_draws_its_margins_and_answers_beside_it(page, trained_run):
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#dataset-path textarea, #dataset-path input").first.fill("builtin-pairs")
    page.locator("#dataset-load").click()
    expect(page.get_by_text(re.compile(r"Loaded [\d,]+ records")).first).to_be_visible(timeout=120_000)

    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-dpo-settings")).to_be_hidden()
    page.locator("#train-objective").get_by_text("Preference (DPO)").click()
    expect(page.locator("#train-preset input")).to_have_value("Quick CPU preference demo")  # the preset follows
    expect(page.locator("#train-dpo-settings")).to_be_visible()
    expect(page.locator("#train-source")).to_contain_text("preference pairs")
    pick(page, "#train-from-run", trained_run)
    expect(page.locator("#train-dpo-note")).to_contain_text(f"DPO from run {trained_run}")
    page.locator("#train-max-steps input").fill("4")
    page.locator("#train-eval-every input").fill("2")
    page.locator("#train-check").click()
    expect(page.locator("#train-preflight")).to_contain_text("each pair is two rows", timeout=120_000)
    page.locator("#train-start").click()
    status = page.locator("#train-status")
    expect(status).to_contain_text("Finished after 4 of 4 steps", timeout=600_000)
    expect(page.locator("#train-margins .js-plotly-plot")).to_be_visible()
    assert page.locator("#train-margins .scatterlayer .trace").count() >= 2  # train and validation margins
    expect(page.locator("#runs-table")).to_contain_text(re.compile(r"-dpo\b"))
    page.screenshot(path=str(SHOTS / "train-dpo.png"), full_page=True)
