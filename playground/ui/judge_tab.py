"""Judge tab: one click grades a run's base and tuned answers with a Llama 3 judge served by Ollama."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .. import evaluation, judge
from ..errors import PlaygroundError
from ..generation import GenerationSettings
from .common import SessionStops, Shared, notice, run_choices, run_update
from .judge_report import drill_down, views


def api_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered judge server protocol."""
    return [(backend.label, name) for name, backend in judge.BACKENDS.items()]


def build(shared: Shared, tab: gr.Tab) -> None:
    manager = shared.manager
    stops = SessionStops()
    gr.Markdown("Generates the base and tuned answers on the run's own split, then asks a judge model (Llama 3 on "
                "Ollama, or any OpenAI-compatible server) to score each 0–100 against the reference (temperature 0, "
                "fixed seed). Replies that are not a score are asked again once, then counted as **unparsed**, never "
                "as 0. The report gives each average with its 95% interval and checks the judge's biases. Exact "
                "match and ROUGE-L need no server.")
    with gr.Row(equal_height=True):
        run = gr.Dropdown(run_choices(manager), value=None, label="Tuned run", scale=3, elem_id="judge-run")
        split = gr.Dropdown([("test", "test"), ("validation", "validation"), ("train (what it learned from)", "train")],
                            value="test", label="The run's own split", scale=1)
        count = gr.Slider(1, 200, value=20, step=1, label="Examples", scale=2, elem_id="judge-count")
    with gr.Row(equal_height=True):
        api = gr.Radio(api_choices(), value=judge.JudgeSettings().api, label="Server protocol", scale=2,
                       elem_id="judge-api")
        host = gr.Textbox(value=judge.JudgeSettings().host, label="Server address", scale=2, elem_id="judge-host")
        model = gr.Textbox(value="llama3", label="Judge model (its name on the server)", scale=2, elem_id="judge-model")
        key_env = gr.Textbox(value="", label="API key: environment variable (optional)", scale=1,
                             elem_id="judge-key-env")
        check = gr.Button("Check server", scale=1, elem_id="judge-check")
        pull = gr.Button("Pull model", scale=1, visible=False, elem_id="judge-pull")
    server = gr.HTML(elem_id="judge-server")
    with gr.Accordion("Judge settings", open=False):
        with gr.Row():
            concurrency = gr.Slider(1, 16, value=4, step=1, label="Requests in flight")
            timeout = gr.Number(value=120, label="Timeout (s)")
            max_reply = gr.Number(value=judge.JudgeSettings().max_reply_tokens, precision=0, minimum=1,
                                  label="Max reply tokens (a small judge that rambles is cut here)",
                                  elem_id="judge-max-reply")
            max_new = gr.Slider(8, 256, value=64, step=8, label="Max new tokens per answer")
            answers = gr.Radio([("The run's prompt", "playground"),
                                ("The book's: no response header, 256 tokens, '### Response:' removed", "book")],
                               value="playground", label="Test answers", elem_id="judge-answers")
        with gr.Row():
            prompt = gr.Radio([("Injection-safe (default)", "default"), ("The book's prompt, exactly", "book")],
                              value="default", label="Judge prompt", elem_id="judge-prompt")
            structured = gr.Checkbox(label="Structured reply: JSON {reasoning, score}")
            pairwise = gr.Checkbox(label="Also compare base and tuned pairwise, both orders")
            group_by = gr.Textbox(value="task", label="Averages per value of", elem_id="judge-group-by")
        template = gr.Textbox(value=judge.DEFAULT_TEMPLATE, lines=6, label="Judge prompt ({instruction}, {input}, "
                              "{reference}, {response})")
    with gr.Row(equal_height=True):
        grade = gr.Button("Grade base and tuned", variant="primary", scale=2, elem_id="judge-grade")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="judge-stop")
        metrics_only = gr.Checkbox(label="Reference metrics only (exact match, ROUGE-L: no server needed)",
                                   scale=2, elem_id="judge-metrics-only")
    message = gr.HTML(notice(EMPTY, "info"), elem_id="judge-message")
    with gr.Column(visible=False) as results:
        summary = gr.HTML(elem_id="judge-report")
        with gr.Row():
            plot = gr.Plot(label="Score distributions", show_label=False)
            groups = gr.Plot(label="Averages per group", show_label=False, elem_id="judge-groups")
        gr.Markdown("**Per example**, worst regressions first (Δ = tuned − base). Click a row for the whole example and the judge's "
                    "own replies.")
        rows = gr.Dataframe(interactive=False, max_height=420, max_chars=90, elem_id="judge-table")
        detail = gr.HTML(elem_id="judge-detail-panel")
        downloads = gr.File(label="Downloads: both answers, the book's file for the tuned model, the scores",
                            file_count="multiple", elem_id="judge-downloads")
    shown_rows = gr.State([])  # the table's rows in display order, for the drill-down
    result_outputs = [results, summary, plot, groups, rows, detail, downloads, shown_rows]

    def settings_from(api_value, host_value, model_value, key_env_value, prompt_value, concurrency_value,
                      timeout_value, max_reply_value, structured_on, template_value):
        """The judge's settings from the values of `server_inputs`, in their order."""
        settings = judge.JudgeSettings(host=(host_value or "").strip(), model=(model_value or "").strip(),
                                       api=api_value, api_key_env=(key_env_value or "").strip(), prompt=prompt_value,
                                       concurrency=int(concurrency_value), timeout=float(timeout_value or 120),
                                       max_reply_tokens=int(max_reply_value or 0), structured=bool(structured_on),
                                       template=template_value)
        settings.check()
        return settings

    server_inputs = [api, host, model, key_env, prompt, concurrency, timeout, max_reply, structured, template]

    def on_check(*values):
        try:
            status = judge.preflight(settings_from(*values))
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.update(visible=False)
        kind = "ok" if status.ok else ("warn" if status.state == "model_missing" else "error")
        return notice(status.message, kind), gr.update(visible=status.state == "model_missing")

    check.click(on_check, server_inputs, [server, pull])

    def on_api(api_value, host_value):
        """The usual address for the protocol, unless the user typed another one."""
        usual = {name: judge.backends.default_host(name) for name in judge.BACKENDS}
        return usual[api_value] if (host_value or "").strip() in usual.values() else gr.skip()

    api.change(on_api, [api, host], host)

    def on_pull(api_value, host_value, model_value, key_env_value, prompt_value, concurrency_value, timeout_value,
                max_reply_value, structured_on, template_value, progress=gr.Progress()):
        # each input a parameter of its own: Gradio passes gr.Progress and gr.Request by position
        server = (api_value, host_value, model_value, key_env_value, prompt_value, concurrency_value, timeout_value,
                  max_reply_value, structured_on, template_value)
        try:
            settings = settings_from(*server)
            judge.pull(settings, on_progress=lambda fraction, text: progress(fraction, desc=text))
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.update()
        return notice(f"Pulled {settings.model}; ready to grade.", "ok"), gr.update(visible=False)

    pull.click(on_pull, server_inputs, [server, pull])

    def on_grade(run_id, split_name, limit, max_tokens, answers_value, pairwise_on, metrics_on, group_value, api_value,
                 host_value, model_value, key_env_value, prompt_value, concurrency_value, timeout_value, max_reply_value,
                 structured_on, template_value, request: gr.Request, progress=gr.Progress()):
        server = (api_value, host_value, model_value, key_env_value, prompt_value, concurrency_value, timeout_value,
                  max_reply_value, structured_on, template_value)
        stop_event = stops.fresh(request)
        skip = (gr.skip(),) * len(result_outputs)
        if not run_id:
            return notice("Pick a tuned run first (train one in the Train tab).", "error"), *skip
        try:
            settings = settings_from(*server)
            status = None
            if not metrics_on:
                progress(0, desc=f"Checking the judge server at {settings.host}")
                status = judge.preflight(settings)
                if not status.ok:
                    return notice(status.message + " To grade without a server, tick “Reference metrics only” "
                                  "beside the Grade button.", "error"), *skip
            progress(0, desc="Loading the model")
            path = evaluation.generate_responses(
                manager, run_id, split_name, int(limit), GenerationSettings(max_new_tokens=int(max_tokens)),
                on_progress=lambda f, text: progress(f * 0.5, desc=text), stop=stop_event,
                answers=answers_value or "playground")
            progress(0.5, desc="Asking the judge" if not metrics_on else "Computing the reference metrics")
            result = evaluation.grade_responses(
                path, settings, evaluation.judge_dir(manager.models_dir, run_id) / "cache.jsonl", pairwise=pairwise_on,
                on_progress=lambda f, text: progress(0.5 + f * 0.5, desc=text), stop=stop_event,
                use_judge=not metrics_on, server=status, group_by=(group_value or "task").strip())
        except PlaygroundError as exc:
            return notice(str(exc), "error"), *skip
        saved = evaluation.latest_grading(manager.models_dir, run_id)
        judged = evaluation.latest_grading(manager.models_dir, run_id, judged=True) if metrics_on else None
        kept = notice(f"The last judge grading of this run ({judged['grading']}) stays the one Compare and model "
                      "cards quote; it is shown again when you come back to this run.", "info") if judged else ""
        return (finished_message(result.summary, manager.run_data(run_id).note) + kept, *show(saved))

    grade.click(on_grade, [run, split, count, max_new, answers, pairwise, metrics_only, group_by, *server_inputs],
                [message, *result_outputs], show_progress_on=[message])

    def on_select(shown, event: gr.SelectData):
        row = event.index[0] if event and event.index else None
        return drill_down(shown[row]) if row is not None and row < len(shown) else ""

    rows.select(on_select, shown_rows, detail)

    def on_stop(request: gr.Request):
        stops.stop(request)
        return notice("Stopping: what was graded is kept; grade again to finish the rest.", "warn")

    stop.click(on_stop, None, message)

    def refresh_runs(current):
        """The runs, and the picked run's last grading (so it is there again after a reload)."""
        update = run_update(manager, current)
        return update, *last_grading(update.get("value"))

    def last_grading(run_id):
        try:
            saved = evaluation.quoted_grading(manager.models_dir, run_id) if run_id else None
        except PlaygroundError as exc:
            return notice(str(exc), "error"), *show(None)
        kind = "judge grading" if saved and saved["judge"].get("used") else "grading (reference metrics only, no judge)"
        text = notice(EMPTY, "info") if saved is None else notice(
            f"The last {kind} of this run ({saved['grading']}); grade again for another split or size.", "info")
        return text, *show(saved)

    run.change(last_grading, run, [message, *result_outputs])
    outputs = [run, message, *result_outputs]
    gr.on([shared.app.load, tab.select], refresh_runs, run, outputs)


EMPTY = ("No grading of this run yet. Press “Grade base and tuned”: the report card appears here with each "
         "average and its 95% interval, the score distributions, averages per task and every example.")


def show(saved: dict[str, Any] | None) -> tuple[Any, ...]:
    """The results area's updates for a saved grading (see evaluation.latest_grading), or hidden."""
    if saved is None:
        return gr.update(visible=False), "", None, None, None, "", None, []
    cards, scores, groups, frame, widths, ordered = views(saved)
    return (gr.update(visible=True), cards, scores, groups, gr.update(value=frame, column_widths=widths), "",
            saved["files"], ordered)


def finished_message(summary: dict[str, Any], note: str) -> str:
    """The first lines of the report; a warning when answers were left ungraded, with why."""
    lines = evaluation.summary_lines(summary)[:2]
    missing = sum((summary.get(side) or {}).get(key, 0) for side in ("base", "tuned") for key in ("errors", "skipped"))
    text = notice(" · ".join(lines) or "Reference metrics computed.", "warn" if missing else "ok")
    return text + (notice(note, "warn") if note else "")
