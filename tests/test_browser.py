"""The app as a person uses it: Playwright driving Debian's Chromium against `python app.py`.

Each test opens a page of its own (a session of its own) on one app per module; the runs a test needs
and does not make in the browser are trained or graded through the command line by the fixtures of
`browser_app`, so every test passes alone. The tabs that answer, inspect, grade or export with a run do it with a run
of the tiny model (conftest), in seconds; the embedded default model runs where its speed is the
point: the Train tab's first fine-tune, a stopped and resumed run, and a chat typed into while it streams."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browser_app import (SHOTS, app_url, bot_texts, browser, default_run, graded_run, models, page,  # noqa: F401
                         pick, trained_run, ungraded_run, wait_for_answers)
from tests_helpers import free_port, run_cli, wait_until

pytestmark = pytest.mark.slow


def test_dataset_tab_pages_searches_and_shows_a_record(page, tmp_path):
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=180_000)
    expect(page.locator("#page-caption")).to_contain_text("page 1 of 120")
    expect(page.get_by_text("1,196").first).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    page.locator("#page-next").click()
    expect(page.locator("#page-caption")).to_contain_text("page 2 of 120")
    expect(page.locator("#dataset-table [data-testid='cell-0-0']")).to_have_text("10")
    page.locator("#dataset-search textarea, #dataset-search input").first.fill("capital")
    expect(page.locator("#page-caption")).to_contain_text("records match")
    page.locator("#dataset-table [data-testid='cell-0-2']").click()
    expect(page.locator("#record-detail")).to_contain_text("capital")
    page.screenshot(path=str(SHOTS / "dataset.png"), full_page=True)
    # a whole page of rows fits in the table's box: nothing to scroll inside it
    fits = page.locator("#dataset-table").evaluate(
        "t => [...t.querySelectorAll('*')].every(e => getComputedStyle(e).overflowY !== 'auto' || e.scrollHeight <= e.clientHeight + 1)")
    assert fits

    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n')
    page.locator("#dataset-path textarea, #dataset-path input").first.fill(str(bad))
    page.locator("#dataset-load").click()
    expect(page.get_by_text("line 2, field 'output': missing")).to_be_visible()
    expect(page.get_by_text("1,196").first).to_be_visible()  # the bundled dataset is kept

    good = tmp_path / "dolly.json"
    good.write_text(json.dumps([{"instruction": f"Say {i}.", "context": "", "response": str(i)} for i in range(30)]))
    page.locator("#dataset-path textarea, #dataset-path input").first.fill(str(good))
    page.locator("#dataset-load").click()
    expect(page.get_by_text("Loaded 30 records")).to_be_visible()
    expect(page.locator("#page-caption")).to_contain_text("30 records · page 1 of 3")

    # an upload is called by its own name, not by the temporary path Gradio stores it under
    page.locator("#dataset-upload input[type=file]").set_input_files(str(bad))
    expect(page.get_by_text("broken.jsonl: line 2, field 'output': missing")).to_be_visible()
    page.locator("#dataset-upload input[type=file]").set_input_files(str(good))
    expect(page.get_by_text("Loaded 30 records from dolly.json.")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("/tmp/gradio")
    page.get_by_role("tab", name="Train").click()
    expect(page.get_by_text("Trains on dolly.json")).to_be_visible()
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#dataset-builtin").click()
    expect(page.locator("#page-caption")).to_contain_text("1,196 records")


def test_dataset_tab_checks_the_data_and_opens_a_record_found(page):
    page.get_by_role("tab", name="Dataset").click()
    expect(page.locator("#page-caption")).to_contain_text("1,196 records")
    page.locator("#check-max-length input[type=number]").fill("48")
    page.locator("#check-mask").get_by_text("The whole prompt").click()
    page.locator("#data-check").click()
    findings = page.locator("#data-check-findings")
    expect(findings).to_contain_text("kinds of problem found")
    expect(findings).to_contain_text("Alpaca (the book's template) style, max length 48, whole prompt masked")
    expect(findings).to_contain_text("response cut away")
    expect(findings).to_contain_text("#146")  # its output repeats its input
    page.locator("#data-check-record input").click()
    page.locator("#data-check-record [role=option]").filter(has_text="output equals the input: #146").click()
    expect(page.locator("#record-detail")).to_contain_text("Record #146")
    findings.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "dataset-check.png"), full_page=True)


def test_prompt_styles_switch(page):
    page.get_by_role("tab", name="Prompt styles").click()
    training = page.locator("#training-text")
    expect(training).to_contain_text("### Instruction:")
    page.locator("#random-with-input").click()
    expect(training).to_contain_text("### Input:")
    page.locator("#prompt-style").get_by_text("Phi-3").click()
    expect(training).to_contain_text("<|assistant|>:")
    expect(training).not_to_contain_text("### Instruction:")
    page.locator("#prompt-style").get_by_text("chat template").click()
    expect(training).to_contain_text("<start_of_turn>model")
    expect(page.locator("#inference-text textarea")).to_have_value(re.compile(r"<start_of_turn>model\n$"))
    page.locator("#prompt-style").get_by_text("Custom").click()
    page.locator("#custom-template textarea").fill("Q: {instruction} {output}")
    page.locator("#custom-template textarea").blur()
    expect(training).to_contain_text("Q: ")
    page.locator("#custom-template textarea").fill("Q: {instruction} {bogus}")
    page.locator("#custom-template textarea").blur()
    expect(page.get_by_text("unknown placeholder {bogus}")).to_be_visible()
    expect(training).to_have_count(0)  # no stale preview under the error
    expect(page.locator("#inference-text textarea")).to_have_value("")
    page.screenshot(path=str(SHOTS / "prompts-template-error.png"), full_page=True)
    page.locator("#custom-template textarea").fill("Q: {instruction} {output}")
    page.locator("#custom-template textarea").blur()
    expect(training).to_contain_text("Q: ")
    page.locator("#prompt-style").get_by_text("Alpaca").click()
    expect(training).to_contain_text("### Instruction:")  # drawn anew: only the Alpaca text has it
    expect(training).to_contain_text("<eos>")
    expect(page.locator("#token-counts")).to_contain_text("response token")
    page.screenshot(path=str(SHOTS / "prompts.png"), full_page=True)


def test_batch_grid_shows_masking_and_truncation(page):
    # the session has one prompt style: the one picked in Prompt styles is the one batches use
    page.get_by_role("tab", name="Prompt styles").click()
    page.locator("#prompt-style").get_by_text("Phi-3").click()
    page.get_by_role("tab", name="Batch masking").click()
    grid = page.locator("#batch-grid")
    expect(page.locator("#batch-style")).to_contain_text("Phi-3")
    expect(grid).to_contain_text("assistant")
    page.get_by_role("tab", name="Prompt styles").click()
    page.locator("#prompt-style").get_by_text("Alpaca").click()
    page.get_by_role("tab", name="Batch masking").click()
    expect(page.locator("#batch-style")).to_contain_text("Alpaca")
    expect(grid).to_contain_text("Sample 4")
    expect(grid).to_contain_text("Instruction")
    assert grid.locator(".pg-row").count() == grid.locator(".pg-labels").count() > 4  # labels on every line
    summary = page.locator("#batch-summary")
    expect(summary).to_contain_text("4 ×")
    # without masking every real target is trained: no masked cell
    assert grid.locator("[title*='masked (-100)']").count() == 0
    assert grid.locator("[title*='end-of-text token, trained']").count() >= 1
    page.locator("#batch-mask").get_by_text("The whole prompt").click()  # one choice of three, as in Train
    expect(grid.locator("[title*='masked (-100)']").first).to_be_visible()
    masked = grid.locator("[title*='masked (-100)']").count()
    trained = grid.locator("[title*='response token, trained']").count()
    assert masked > trained > 0
    page.locator("#max-length input[type=number]").fill("48")
    page.locator("#max-length input[type=number]").press("Enter")
    expect(summary).to_contain_text("4 × 48")
    expect(grid.locator("[title*='truncated away']").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "batch.png"), full_page=True)
    page.locator("#max-length input[type=number]").fill("16")  # shorter than the Alpaca prompt
    page.locator("#max-length input[type=number]").press("Enter")
    expect(summary).to_contain_text("4 × 16")
    expect(page.get_by_text("0 trained targets: with the prompt masked and a max length of 16")).to_be_visible()
    page.screenshot(path=str(SHOTS / "batch-nothing-trained.png"), full_page=True)
    page.locator("#max-length input[type=number]").fill("0")
    page.locator("#max-length input[type=number]").press("Enter")
    page.locator("#batch-mask").get_by_text("Nothing").click()


def test_train_tab_runs_a_short_fine_tune_and_shows_it_learning(page):
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-max-steps input").fill("2")
    page.locator("#train-eval-every input").fill("1")
    page.locator("#train-probe-every input").fill("0")
    page.locator("#train-score-sample input").fill("8")  # the preset scores answers at the end: 8 of them
    page.locator("#train-check").click()  # before Start: the estimate and the data check, not blocking
    expect(page.locator("#train-preflight")).to_contain_text("Memory: about", timeout=120_000)
    expect(page.locator("#train-preflight")).to_contain_text("for 2 steps")
    expect(page.locator("#train-preflight")).to_contain_text("data check found")
    page.locator("#train-start").click()
    status = page.locator("#train-status")
    expect(page.locator("#train-preflight")).not_to_contain_text("Memory")  # the run's own progress and time replace the estimate
    # the phase shows with a clock while the model loads; no empty plot
    expect(page.locator("#train-phase")).to_contain_text(re.compile("Loading the model|Converting|Preparing|Probing"))
    expect(status).not_to_contain_text("step 0 of 0")
    expect(page.locator("#train-curve")).to_be_hidden()
    expect(page.locator("#runs-table")).to_contain_text(re.compile("loading the model|running|preparing|converting"))
    page.locator("#train-start").click()  # a second Start is refused, and the refusal stays
    expect(page.locator("#train-message")).to_contain_text("still training")
    page.wait_for_timeout(3000)
    expect(page.locator("#train-message")).to_contain_text("still training")
    page.screenshot(path=str(SHOTS / "train-starting.png"), full_page=True)
    expect(page.locator("#train-probes")).to_contain_text("answer at step 0", timeout=600_000)
    expect(page.locator("#train-probes th", has_text="answer at step")).to_have_count(1)
    expect(page.locator("#train-phase")).to_contain_text(re.compile("Validating|Training"), timeout=600_000)
    expect(page.locator("#train-curve .js-plotly-plot")).to_be_visible(timeout=600_000)
    expect(status).to_contain_text("tokens/s", timeout=600_000)
    page.screenshot(path=str(SHOTS / "train-running.png"), full_page=True)
    expect(status).to_contain_text("Finished after 2 of 2 steps", timeout=600_000)
    expect(page.locator("#train-probes")).to_contain_text("answer at step 2")  # the probes again at the end
    expect(page.locator("#train-message")).not_to_contain_text("still training")  # stale once the run ended
    assert page.locator("#train-curve .scatterlayer .trace").count() >= 2  # train and validation curves
    expect(page.locator("#train-answers")).to_contain_text("best checkpoint: step 2")  # answers scored at the end
    expect(page.locator("#runs-table")).to_contain_text("finished")
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)


def test_chat_tab_two_messages_regenerate_and_a_blind_vote(trained_run, page):
    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#chat-run input")).to_have_value(re.compile("lora"))  # the newest run is picked
    expect(page.locator("#chat-run-info")).to_contain_text("test split")
    page.locator("#chat-settings").get_by_text("Generation settings").click()
    page.locator("#chat-max-new input[type=number]").fill("12")
    page.locator("#chat-max-new input[type=number]").press("Enter")
    page.locator("#chat-message textarea").fill("Convert 5 kilometers to meters.")
    page.locator("#chat-send").click()
    first_left, first_right = wait_for_answers(page, 1)
    assert all(first_left) and all(first_right)
    assert "Error" not in first_left[0] + first_right[0]

    page.locator("#chat-message textarea").fill("What is the capital of Japan?")
    page.locator("#chat-send").click()
    left, right = wait_for_answers(page, 2)
    assert left[0] == first_left[0] and right[0] == first_right[0]  # the first turn is kept as it was
    assert left[1] and right[1] and "Error" not in left[1] + right[1]
    expect(page.locator("#chat-left")).to_contain_text("What is the capital of Japan?")
    page.screenshot(path=str(SHOTS / "chat-two-messages.png"), full_page=True)

    page.locator("#chat-regenerate").click()
    regenerated_left, regenerated_right = wait_for_answers(page, 2)
    assert regenerated_left == left and regenerated_right == right  # greedy: the same answers again
    expect(page.locator("#chat-error")).to_be_empty()

    for option in range(20):  # the first example with an Input section
        page.locator("#chat-example input").click()
        page.locator("#chat-example [role=option]").nth(option).click()
        page.locator("#chat-use-example").click()
        expect(page.locator("#chat-reference")).to_contain_text("filled in below")
        if "Input section" in page.locator("#chat-reference").inner_text():
            break
    expect(page.locator("#chat-reference")).to_contain_text("Reference answer")
    expect(page.locator("#chat-message textarea")).not_to_have_value("")
    # the record's Input is shown beside its reference answer, and in its own box
    # both are filled by the same event: compare them once it has drawn both (the reference may still
    # show the example picked before)
    wait_until(lambda: page.locator("#chat-input textarea").input_value().strip()
               == page.locator("#chat-example-input").inner_text().strip() != "", "the example's Input in its box",
               seconds=30, every=0.25)
    page.screenshot(path=str(SHOTS / "chat-example.png"), full_page=True)

    page.locator("#chat-blind input").check()
    expect(page.locator("#chat-left .message")).to_have_count(0)
    expect(page.locator("#chat-votes")).to_contain_text("a new conversation starts")  # not a silent clear
    page.locator("#chat-message textarea").fill("Name a primary color.")
    page.locator("#chat-send").click()
    expect(page.locator("#vote-tie")).to_be_visible(timeout=180_000)
    expect(page.locator("#chat-left-name")).to_contain_text("Model A")
    page.locator("#vote-left").click()
    expect(page.locator("#chat-votes")).to_contain_text("Vote saved")
    expect(page.locator("#chat-votes")).to_contain_text("Left was")
    expect(page.locator("#vote-tally")).to_contain_text("1 in all")
    page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)


def test_chat_keeps_a_message_sent_while_the_answers_stream(default_run, page):
    page.get_by_role("tab", name="Chat").click()
    pick(page, "#chat-run", default_run)
    expect(page.locator("#chat-run-info")).to_contain_text(f"Run {default_run}: lora on default")
    page.locator("#chat-settings").get_by_text("Generation settings").click()
    page.locator("#chat-max-new input[type=number]").fill("400")  # long enough to type while it streams
    page.locator("#chat-max-new input[type=number]").press("Enter")
    send, message = page.locator("#chat-send"), page.locator("#chat-message textarea")
    message.fill("Write a long story about a cat.")
    send.click()
    expect(page.locator("#chat-left")).to_contain_text("Write a long story about a cat.")  # shown at once
    expect(send).to_be_disabled()
    expect(send).to_have_text("Answering…")
    expect(message).to_have_value("")
    expect(page.locator("#chat-left [data-testid='bot']").first).not_to_have_text("", timeout=300_000)  # streaming

    message.fill("And what is 3 + 3?")
    message.press("Shift+Enter")  # sends from a two-line box; while the answers stream: refused, nothing lost
    expect(page.locator("#chat-error")).to_contain_text("still answering")
    waiting = re.compile(r"^And what is 3 \+ 3\?$")
    expect(message).to_have_value(waiting)
    assert "3 + 3" not in page.locator("#chat-left").inner_text()
    page.screenshot(path=str(SHOTS / "chat-busy.png"), full_page=True)

    page.locator("#chat-stop").click()  # Stop hands Send back, keeps what was written, shows no error badge
    expect(send).to_be_enabled()
    expect(send).to_have_text("Send")
    expect(message).to_have_value(waiting)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)
    page.locator("#chat-max-new input[type=number]").fill("8")
    page.locator("#chat-max-new input[type=number]").press("Enter")
    send.click()
    left, right = wait_for_answers(page, 2)  # the stopped turn stays, with what it had written
    assert all(left) and all(right)
    expect(page.locator("#chat-left")).to_contain_text("And what is 3 + 3?")
    expect(message).to_have_value("")
    expect(send).to_be_enabled()
    expect(page.locator("#chat-error")).to_be_empty()


def test_inspect_tab_shows_what_changed_per_token_and_per_family(trained_run, page):
    page.get_by_role("tab", name="Inspect").click()
    expect(page.locator("#inspect-run input")).to_have_value(re.compile("lora"))  # the newest run is picked
    expect(page.locator("#inspect-example input")).to_have_value(re.compile(r"^0 · record \d+"))
    page.locator("#inspect-go").click()
    expect(page.locator("#inspect-message")).to_contain_text("answer tokens", timeout=180_000)
    tokens = page.locator("#inspect-tuned .token")
    count = tokens.count()
    assert count >= 2 and page.locator("#inspect-base .token").count() == count
    expect(page.locator("#inspect-detail")).to_contain_text("Token 0")
    tokens.nth(count - 1).click()  # the end-of-text token: both sides' top 5 for it
    expect(page.locator("#inspect-detail")).to_contain_text(f"Token {count - 1}")
    expect(page.locator("#inspect-detail")).to_contain_text("Tuned: top 5 next tokens")
    expect(page.locator("#inspect-summary")).to_contain_text("answer loss, base → tuned")
    page.screenshot(path=str(SHOTS / "inspect.png"), full_page=True)

    page.get_by_role("tab", name="Chat").click()  # leaving the tab and coming back keeps the result
    page.get_by_role("tab", name="Inspect").click()
    expect(page.locator("#inspect-detail")).to_contain_text(f"Token {count - 1}")

    page.get_by_text("Or a text of your own").click()
    page.locator("#inspect-instruction textarea").fill("Name a primary color.")
    page.locator("#inspect-reference textarea").fill("Red.")
    page.locator("#inspect-typed").click()
    expect(page.locator("#inspect-message")).to_contain_text("Your text", timeout=180_000)
    expect(page.locator("#inspect-summary")).to_contain_text("Name a primary color.")

    page.locator("#families-split input").click()
    page.locator("#families-split [role=option]", has_text="test").click()
    page.locator("#families-limit input[type=number]").fill("40")  # enough for several families
    page.locator("#families-limit input[type=number]").press("Enter")
    page.locator("#families-go").click()
    expect(page.locator("#families-message")).to_contain_text("40 examples of the test split", timeout=300_000)
    expect(page.locator("#families-plot .js-plotly-plot")).to_be_visible()
    page.screenshot(path=str(SHOTS / "inspect-families.png"), full_page=True)


def set_judge_count(page, n):
    page.locator("#judge-count input[type=number]").fill(str(n))
    page.locator("#judge-count input[type=number]").press("Enter")


def test_judge_tab_grades_with_one_click_against_the_ollama_stand_in(models, ungraded_run, page):
    from ollama_standin import OllamaStandin

    with OllamaStandin(reply=lambda request: "72") as server:
        page.get_by_role("tab", name="Judge").click()
        expect(page.locator("#judge-run input")).to_have_value(re.compile("lora"))
        expect(page.locator("#judge-run input")).to_have_value(re.compile(ungraded_run))
        # before a grading: a short explanation, no empty table or plots
        expect(page.locator("#judge-message")).to_contain_text("No grading of this run yet")
        expect(page.locator("#judge-table")).to_be_hidden()
        page.screenshot(path=str(SHOTS / "judge-before.png"), full_page=True)
        page.locator("#judge-host input, #judge-host textarea").first.fill(server.url)
        set_judge_count(page, 3)
        page.locator("#judge-grade").click()
        summary = page.locator("#judge-summary")
        expect(summary).to_be_visible(timeout=300_000)
        expect(page.locator("#judge-base")).to_contain_text("72.0")
        expect(page.locator("#judge-tuned")).to_contain_text("scored 3 of 3")
        expect(page.locator("#judge-downloads")).to_contain_text("instruction-data-with-response")
        # the judge is asked once per distinct answer (a base and a tuned answer may be the same text)
        [responses] = (models / "runs" / ungraded_run / "judge").glob("*/responses.json")
        answers = [(r["base_response"], r["tuned_response"]) for r in json.loads(responses.read_text())]
        assert len(server.requests) == sum(len(set(pair)) for pair in answers) >= 5
        # the drill-down: one example whole, with the judge's own reply
        page.locator("#judge-table").get_by_role("gridcell").nth(6).click()
        detail = page.locator("#judge-detail")
        expect(detail).to_contain_text("The judge's reply (tuned)")
        expect(detail).to_contain_text("score 72 (scored)")
        page.screenshot(path=str(SHOTS / "judge.png"), full_page=True)
        # leaving the tab and coming back, or reloading the page, shows the last grading again
        page.get_by_role("tab", name="Chat").click()
        page.get_by_role("tab", name="Judge").click()
        expect(page.locator("#judge-tuned")).to_contain_text("scored 3 of 3")
        page.reload()
        page.get_by_role("tab", name="Judge").click()
        expect(page.locator("#judge-tuned")).to_contain_text("scored 3 of 3", timeout=60_000)
        expect(page.locator("#judge-message")).to_contain_text("The last judge grading of this run")


def test_judge_tab_with_the_server_down_points_to_reference_metrics(trained_run, page):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    page.get_by_role("tab", name="Judge").click()
    page.locator("#judge-host input, #judge-host textarea").first.fill(down)
    set_judge_count(page, 3)
    page.locator("#judge-grade").click()
    expect(page.locator("#judge-message")).to_contain_text("Reference metrics only", timeout=60_000)
    page.locator("#judge-metrics-only").get_by_role("checkbox").check()
    page.locator("#judge-grade").click()
    expect(page.locator("#judge-message")).to_contain_text("reference metrics: ROUGE-L", timeout=300_000)
    expect(page.locator("#judge-summary")).to_contain_text("exact match")
    expect(page.locator("#judge-facts")).to_have_count(0)  # no judge was asked
    expect(page.locator("#judge-table")).to_contain_text("tuned ROUGE-L")  # its own report: no blank score columns
    page.screenshot(path=str(SHOTS / "judge-metrics-only.png"), full_page=True)
    page.locator("#judge-metrics-only").get_by_role("checkbox").uncheck()


def test_judge_tab_checks_the_server_and_pulls_the_missing_model(page):
    from ollama_standin import OllamaStandin

    with OllamaStandin(models=("mistral:latest",)) as server:
        page.get_by_role("tab", name="Judge").click()
        page.locator("#judge-host input, #judge-host textarea").first.fill(server.url)
        expect(page.locator("#judge-pull")).to_be_hidden()
        page.locator("#judge-check").click()
        expect(page.locator("#judge-server")).to_contain_text("ollama pull llama3")
        page.locator("#judge-pull").click()
        expect(page.locator("#judge-server")).to_contain_text("Pulled llama3; ready to grade.", timeout=60_000)
        expect(page.locator("#judge-pull")).to_be_hidden()
        page.locator("#judge-check").click()
        expect(page.locator("#judge-server")).to_contain_text("llama3", timeout=30_000)
        expect(page.locator("#judge-server .pg-ok")).to_be_visible()


def test_judge_tab_grades_on_a_real_openai_compatible_server(trained_run, page):
    from llama_server import MODEL, LlamaServer

    from playground.judge.backends import default_host

    with LlamaServer(n_ctx=2048) as server:
        page.get_by_role("tab", name="Judge").click()
        page.locator("#judge-api").get_by_text("OpenAI-compatible").click()
        host = page.locator("#judge-host input, #judge-host textarea").first
        expect(host).to_have_value(default_host("openai"))  # the protocol's usual address
        host.fill(server.url)
        page.locator("#judge-api").get_by_text("Ollama", exact=True).click()  # a typed address stays whatever is picked
        page.locator("#judge-api").get_by_text("OpenAI-compatible").click()
        expect(host).to_have_value(server.url)
        page.locator("#judge-model input, #judge-model textarea").first.fill(MODEL)
        set_judge_count(page, 3)
        page.get_by_text("Judge settings").click()
        page.locator("#judge-max-reply input").fill("16")  # the base model rambles: cut its replies short
        page.locator("#judge-max-reply input").press("Enter")  # a number reaches the app on Enter or blur
        expect(page.locator("#judge-max-reply input")).to_have_value("16")
        page.locator("#judge-check").click()
        expect(page.locator("#judge-server")).to_contain_text(f"serves the judge model {MODEL}")
        page.locator("#judge-grade").click()
        expect(page.locator("#judge-facts")).to_contain_text(f"via openai at {server.url}", timeout=300_000)
        expect(page.locator("#judge-tuned")).to_contain_text("of 3")
        expect(page.locator("#judge-report")).to_contain_text("size is not reported")
        expect(page.locator("#judge-report")).to_contain_text("'max_tokens': 16")
        page.screenshot(path=str(SHOTS / "judge-openai.png"), full_page=True)


def test_compare_tab_overlays_curves_and_shows_the_graded_figures(graded_run, page):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-runs input").click()
    page.locator("#compare-runs [role=option]").filter(has_text=graded_run).click()
    page.keyboard.press("Escape")
    page.locator("#compare-go").click()
    expect(page.locator("#compare-message")).to_contain_text("1 run;")
    expect(page.locator("#compare-by-step .js-plotly-plot")).to_be_visible()
    expect(page.locator("#compare-by-time .js-plotly-plot")).to_be_visible()
    expect(page.locator("#compare-figures")).to_contain_text("final val loss")
    expect(page.locator("#compare-figures")).to_contain_text("tuned ROUGE-L")  # the run's grading
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)
    page.reload()  # the runs picked stay picked
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=600_000)
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-runs")).to_contain_text(graded_run)


def test_export_tab_writes_a_gguf_and_checks_parity_in_llama_cpp(trained_run, page):
    page.get_by_role("tab", name="Export").click()
    expect(page.locator("#export-run input")).to_have_value(re.compile("lora"))
    page.locator("#export-quant").get_by_text("Q4_K_M").click()  # made by llama.cpp from the F16 file
    page.locator("#export-parity-count input[type=number]").fill("2")
    page.locator("#export-parity-count input[type=number]").press("Enter")
    page.locator("#export-start").click()
    expect(page.locator("#export-message")).to_contain_text("Exported run", timeout=600_000)
    expect(page.locator("#export-files")).to_contain_text("model.gguf")
    expect(page.locator("#export-parity")).to_contain_text("Parity with the app")
    cost = page.locator("#export-cost")  # what the type costs, measured on the run's test split
    expect(cost).to_contain_text("top-1 agreement")
    expect(cost).to_contain_text(re.compile(r"\d+\.\d% of \d+"))
    page.screenshot(path=str(SHOTS / "export-browser.png"), full_page=True)
    page.locator("#export-format").get_by_text("LoRA adapter GGUF").click()  # the adapter alone, a few MB
    expect(page.locator("#export-quant").get_by_label("Q4_K_M")).to_be_checked()  # now the base model's type
    page.locator("#export-start").click()
    expect(page.locator("#export-message")).to_contain_text("--lora adapter.gguf", timeout=600_000)
    expect(page.locator("#export-message")).to_contain_text(re.compile(r"gguf-bases/\S+\.q4_k_m\.gguf"))
    expect(page.locator("#export-files")).to_contain_text("adapter.gguf")
    expect(page.locator("#export-cost")).to_contain_text("adapter.gguf")
    page.screenshot(path=str(SHOTS / "export-lora.png"), full_page=True)
    page.get_by_role("tab", name="Compare").click()  # leaving and coming back shows the last export again
    page.get_by_role("tab", name="Export").click()
    expect(page.locator("#export-message")).to_contain_text("The last export of this run")
    expect(page.locator("#export-cost")).to_contain_text("adapter.gguf")


def test_export_tab_exports_a_checkpoint_picked_under_weights(models, tiny_model_dir, page):
    done = run_cli("train", "--model", tiny_model_dir, "--preset", "Quick CPU demo", "--max-steps", "4",
                   "--checkpoint-every", "2", "--eval-every", "2", "--probes", "0", "--score-answers-every", "0",
                   models_dir=models)
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = Path(done.stdout.strip().splitlines()[-1]).name
    page.get_by_role("tab", name="Export").click()
    pick(page, "#export-run", run_id)
    page.locator("#export-checkpoint input").click()
    assert page.locator("#export-checkpoint [role=option]").all_inner_texts()[-1].strip() == "step 2 checkpoint"
    page.locator("#export-checkpoint [role=option]").filter(has_text="step 2").click()
    page.locator("#export-format").get_by_text("Adapter (peft)", exact=True).click()
    page.locator("#export-start").click()
    expect(page.locator("#export-message")).to_contain_text(f"Exported run {run_id}'s checkpoint at step 2",
                                                            timeout=300_000)
    expect(page.locator("#export-message")).to_contain_text("adapter-step2")
    expect(page.locator("#export-files")).to_contain_text("adapter_model.safetensors")
    page.get_by_role("tab", name="Compare").click()  # coming back shows it as the run's last export
    page.get_by_role("tab", name="Export").click()
    expect(page.locator("#export-message")).to_contain_text("of the checkpoint at step 2")


def test_train_tab_runs_two_variants_one_after_another(tiny_model_dir, page):
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-model textarea, #train-model input").first.fill(str(tiny_model_dir))
    page.locator("#train-max-steps input").fill("1")
    page.locator("#train-eval-every input").fill("0")
    page.locator("#train-probe-every input").fill("0")
    page.locator("#train-variants-box").get_by_text("Exercises: train several").click()
    page.locator("#train-variants").get_by_label("the settings above").uncheck()
    page.locator("#train-run-variants").click()
    status = page.locator("#train-variants-status")
    # the line once both have run (the message right after the click says what to do "when they have run")
    expect(status).to_contain_text("The variants have run", timeout=600_000)
    expect(status).to_contain_text("1. exercise 7.1: the Phi-3 prompt style: run")
    expect(status).to_contain_text("2. exercise 7.2: mask the instruction and input: run")
    assert status.inner_text().count("finished") == 2
    page.screenshot(path=str(SHOTS / "train-variants.png"), full_page=True)


def test_a_run_stopped_in_another_browser_is_relabelled_in_the_open_inspect_tab(tiny_model_dir, page, browser,
                                                                                 app_url):
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-model textarea, #train-model input").first.fill(str(tiny_model_dir))
    page.locator("#train-max-steps input").fill("100000")
    page.locator("#train-probe-every input").fill("0")
    page.locator("#train-start").click()
    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()  # a second person
    try:
        expect(page.locator("#train-status")).to_contain_text(re.compile(r"step \d+ of 100000"), timeout=600_000)
        page.get_by_role("tab", name="Inspect").click()
        page.locator("#inspect-run input").click()  # the store may hold earlier runs: pick the one training
        page.locator("#inspect-run [role=option]").filter(has_text="training now").click()
        expect(page.locator("#inspect-run input")).to_have_value(re.compile("training now"))
        other.goto(app_url)
        other.get_by_role("tab", name="Train").click()
        other.locator("#train-stop").click()
        expect(other.locator("#train-status")).to_contain_text("Stopped after", timeout=120_000)
        # the first page stays on Inspect: its run list follows without leaving the tab
        expect(page.locator("#inspect-run input")).to_have_value(re.compile("stopped"), timeout=60_000)
        expect(page.locator("#inspect-run input")).not_to_have_value(re.compile("training now"))
    finally:  # never leave the run training for the next test
        other.goto(app_url)
        other.get_by_role("tab", name="Train").click()
        other.locator("#train-stop").click()
        expect(other.locator("#train-status")).to_contain_text("Stopped after", timeout=120_000)
        other.context.close()


def test_stopped_run_resumes_on_its_curve_and_chats_from_a_checkpoint(tiny_model_dir, page):
    """The tiny model's steps take milliseconds: the run is long, so that it is stopped twice, never finished."""
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-model textarea, #train-model input").first.fill(str(tiny_model_dir))
    page.locator("#train-max-steps input").fill("5000")
    page.locator("#train-checkpoint-every input").fill("2")
    page.locator("#train-eval-every input").fill("5")
    page.locator("#train-probe-every input").fill("0")
    page.locator("#train-start").click()
    status = page.locator("#train-status")
    expect(status).to_contain_text(re.compile(r"step ([3-9]|\d\d+) of 5000"), timeout=600_000)
    page.locator("#train-stop").click()
    expect(status).to_contain_text("Stopped after", timeout=600_000)
    run_id = re.search(r"Run (\S+)", status.inner_text()).group(1)
    stopped_at = int(re.search(r"Stopped after (\d+)", status.inner_text()).group(1))

    page.locator("#train-resumable input").click()
    page.locator("#train-resumable [role=option]").filter(has_text=f"checkpoint at step {stopped_at} of 5000").click()
    page.locator("#train-resume").click()
    expect(status).to_contain_text(f"Run {run_id}")
    expect(status).to_contain_text("since Resume")  # its clock counts the time before Resume too

    def two_steps_after_resume():
        shown = re.search(r"step (\d+) of 5000", status.inner_text())
        return shown is not None and int(shown.group(1)) > stopped_at + 2

    wait_until(two_steps_after_resume, "two steps after Resume", seconds=600, every=0.5)
    page.locator("#train-stop").click()
    expect(status).to_contain_text(f"since it resumed at step {stopped_at}", timeout=600_000)
    expect(page.locator("#train-curve")).to_contain_text(f"resumed at {stopped_at}")
    page.locator("#train-curve").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "train-resumed.png"), full_page=True)

    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-blind input").uncheck()
    page.locator("#chat-run input").click()
    page.locator("#chat-run [role=option]").filter(has_text=run_id).click()
    page.locator("#chat-checkpoint input").click()
    page.locator("#chat-checkpoint [role=option]").filter(has_text="step 2 checkpoint").first.click()
    expect(page.locator("#chat-run-info")).to_contain_text("checkpoint at step 2")
    page.locator("#chat-clear").click()
    page.locator("#chat-settings").get_by_text("Generation settings").click()
    page.locator("#chat-max-new input[type=number]").fill("12")
    page.locator("#chat-max-new input[type=number]").press("Enter")
    page.locator("#chat-message textarea").fill("Name a primary color.")
    page.locator("#chat-send").click()
    left, right = wait_for_answers(page, 1)
    assert "Error" not in left[0] + right[0]
    page.screenshot(path=str(SHOTS / "chat-checkpoint.png"), full_page=True)
