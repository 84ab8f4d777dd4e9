"""Judge tab: one click grades a run's base and tuned answers with a Llama 3 judge served by Ollama."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import gradio as gr

from .. import evaluation, judge
from ..errors import PlaygroundError
from ..generation import GenerationSettings
from ..judge.settings import without_credentials
from ..model_refs import BASE, side_name
from .common import (Form, SessionStops, Shared, against_choices, against_update, notice, relabel_runs, remember,
                     run_choices, run_update)
from .judge_report import compared_name, drill_down, views


def api_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered judge server protocol."""
    return [(backend.label, name) for name, backend in judge.BACKENDS.items()]


def layout(manager: Any) -> SimpleNamespace:
    """The tab's components: what to grade (`ui.grading`), the judge server (`ui.server`), the buttons
    and the results area."""
    ui = SimpleNamespace(grading=Form(), server=Form())
    gr.Markdown("Generates the base and tuned answers on the run's own split, then asks a judge model (Llama 3 on "
                "Ollama, or any OpenAI-compatible server) to score each 0–100 against the reference (temperature 0, "
                "fixed seed). Replies that are not a score are asked again once, then counted as **unparsed**, never "
                "as 0. The report gives each average with its 95% interval and checks the judge's biases. Exact "
                "match and ROUGE-L need no server. **Compare with** puts another model in the base model's place: "
                "the run it started from, another run on the same base model, or a checkpoint.")
    with gr.Row(equal_height=True):
        ui.grading.run = gr.Dropdown(run_choices(manager), value=None, label="Tuned run", scale=3, elem_id="judge-run")
        ui.grading.against = gr.Dropdown(against_choices(manager, None), value=BASE, label="Compare with", scale=2,
                                         elem_id="judge-against")
        ui.grading.split = gr.Dropdown([("test", "test"), ("validation", "validation"),
                                        ("train (what it learned from)", "train")],
                                       value="test", label="The run's own split", scale=1)
        ui.grading.count = gr.Slider(1, 200, value=20, step=1, label="Examples", scale=2, elem_id="judge-count")
    server_layout(ui)
    settings_layout(ui)
    with gr.Row(equal_height=True):
        ui.grade = gr.Button("Grade base and tuned", variant="primary", scale=2, elem_id="judge-grade")
        ui.stop = gr.Button("Stop", variant="stop", scale=1, elem_id="judge-stop")
        ui.grading.metrics_only = gr.Checkbox(label="Reference metrics only (exact match, ROUGE-L: no server needed)",
                                              scale=2, elem_id="judge-metrics-only")
    ui.message = gr.HTML(notice(EMPTY, "info"), elem_id="judge-message")
    results_layout(ui)
    return ui


def server_layout(ui: SimpleNamespace) -> None:
    """Where the judge is served and by which model, with Check and Pull."""
    defaults = judge.JudgeSettings()
    with gr.Row(equal_height=True):
        ui.server.api = gr.Radio(api_choices(), value=defaults.api, label="Server protocol", scale=2,
                                 elem_id="judge-api")
        ui.server.host = gr.Textbox(value=defaults.host, label="Server address", scale=2, elem_id="judge-host")
        ui.server.model = gr.Textbox(value="llama3", label="Judge model (its name on the server)", scale=2,
                                     elem_id="judge-model")
        ui.server.key_env = gr.Textbox(value="", label="API key: environment variable (optional)", scale=1,
                                       elem_id="judge-key-env")
        ui.check = gr.Button("Check server", scale=1, elem_id="judge-check")
        ui.pull = gr.Button("Pull model", scale=1, visible=False, elem_id="judge-pull")
    ui.server_status = gr.HTML(elem_id="judge-server")


def settings_layout(ui: SimpleNamespace) -> None:
    """The judge's settings (`ui.server`) and the answers' (`ui.grading`), folded away."""
    defaults = judge.JudgeSettings()
    with gr.Accordion("Judge settings", open=False):
        with gr.Row():
            ui.server.concurrency = gr.Slider(1, 16, value=4, step=1, label="Requests in flight")
            ui.server.timeout = gr.Number(value=120, label="Timeout per request, its whole reply (s)")
            ui.server.max_reply = gr.Number(value=defaults.max_reply_tokens, precision=0, minimum=1,
                                            label="Max reply tokens (a small judge that rambles is cut here)",
                                            elem_id="judge-max-reply")
            ui.grading.max_new = gr.Slider(8, 256, value=64, step=8, label="Max new tokens per answer")
            ui.grading.answers = gr.Radio(
                [("The run's prompt", "playground"),
                 ("The book's: no response header, 256 tokens, '### Response:' removed", "book")],
                value="playground", label="Test answers", elem_id="judge-answers")
        with gr.Row():
            ui.server.prompt = gr.Radio([("Injection-safe (default)", "default"), ("The book's prompt, exactly", "book")],
                                        value="default", label="Judge prompt", elem_id="judge-prompt")
            ui.server.structured = gr.Checkbox(label="Structured reply: JSON {reasoning, score}")
            ui.grading.pairwise = gr.Checkbox(label="Also compare base and tuned pairwise, both orders")
            ui.grading.group_by = gr.Textbox(value="task", label="Averages per value of", elem_id="judge-group-by")
        ui.server.template = gr.Textbox(value=judge.DEFAULT_TEMPLATE, lines=6, label="Judge prompt ({instruction}, "
                                        "{input}, {reference}, {response})")


def results_layout(ui: SimpleNamespace) -> None:
    """The report card, the plots, the table of examples with its drill-down, and the files."""
    with gr.Column(visible=False) as ui.results:
        ui.summary = gr.HTML(elem_id="judge-report")
        with gr.Row():
            ui.plot = gr.Plot(label="Score distributions", show_label=False)
            ui.groups = gr.Plot(label="Averages per group", show_label=False, elem_id="judge-groups")
        gr.Markdown("**Per example**, worst regressions first (Δ = tuned − the model it is compared with, the base "
                    "unless another is named). Click a row for the whole example and the judge's own replies.")
        ui.rows = gr.Dataframe(interactive=False, max_height=420, max_chars=90, elem_id="judge-table")
        ui.detail = gr.HTML(elem_id="judge-detail-panel")
        ui.downloads = gr.File(label="Downloads: both answers, the book's file for the tuned model, the scores",
                               file_count="multiple", elem_id="judge-downloads")
    ui.shown_rows = gr.State({})  # the table's rows in display order and the compared model's name, for the drill-down
    # in the order of `show`'s updates
    ui.result_outputs = [ui.results, ui.summary, ui.plot, ui.groups, ui.rows, ui.detail, ui.downloads, ui.shown_rows]


def judge_settings(server: SimpleNamespace) -> judge.JudgeSettings:
    """The judge's settings from the values of `ui.server`, checked."""
    settings = judge.JudgeSettings(host=(server.host or "").strip(), model=(server.model or "").strip(),
                                   api=server.api, api_key_env=(server.key_env or "").strip(), prompt=server.prompt,
                                   concurrency=int(server.concurrency), timeout=float(server.timeout or 120),
                                   max_reply_tokens=int(server.max_reply or 0), structured=bool(server.structured),
                                   template=server.template)
    settings.check()
    return settings


def check_server(server: SimpleNamespace) -> tuple[str, Any]:
    """(the server's state, the Pull button shown when only the model is missing)."""
    try:
        status = judge.preflight(judge_settings(server))
    except PlaygroundError as exc:
        return notice(str(exc), "error"), gr.update(visible=False)
    kind = "ok" if status.ok else ("warn" if status.state == "model_missing" else "error")
    return notice(status.message, kind), gr.update(visible=status.state == "model_missing")


def usual_host_js() -> str:
    """A browser-side function for picking a protocol: its usual address, unless the user typed another
    one. It runs in the page, at once, so it cannot land after an address typed right after the pick,
    and it fires on the user's pick only, not when a reload puts the stored settings back."""
    usual = json.dumps({name: judge.backends.default_host(name) for name in judge.BACKENDS})
    return (f"(api, host) => {{ const usual = {usual}; "
            "return Object.values(usual).includes((host || '').trim()) ? usual[api] : host; }")


def pull_model(server: SimpleNamespace, progress: Any) -> tuple[str, Any]:
    try:
        settings = judge_settings(server)
        judge.pull(settings, on_progress=lambda fraction, text: progress(fraction, desc=text))
    except PlaygroundError as exc:
        return notice(str(exc), "error"), gr.update()
    return notice(f"Pulled {settings.model}; ready to grade.", "ok"), gr.update(visible=False)


def grade(manager: Any, grading: SimpleNamespace, server: SimpleNamespace, stop: Any, progress: Any) -> tuple[Any, ...]:
    """Answers on the run's split, graded; the message and the results area's updates."""
    skip = (gr.skip(),) * len(show(None))
    if not grading.run:
        return notice("Pick a tuned run first (train one in the Train tab).", "error"), *skip
    try:
        settings = judge_settings(server)
        status = None
        if not grading.metrics_only:
            progress(0, desc=f"Checking the judge server at {settings.shown_host}")
            status = judge.preflight(settings)
            if not status.ok:
                return notice(status.message + " To grade without a server, tick “Reference metrics only” "
                              "beside the Grade button.", "error"), *skip
        progress(0, desc="Loading the model")
        path = evaluation.generate_responses(
            manager, grading.run, grading.split, int(grading.count),
            GenerationSettings(max_new_tokens=int(grading.max_new)),
            on_progress=lambda f, text: progress(f * 0.5, desc=text), stop=stop,
            answers=grading.answers or "playground", against=grading.against or BASE)
        progress(0.5, desc="Asking the judge" if not grading.metrics_only else "Computing the reference metrics")
        result = evaluation.grade_responses(
            path, settings, evaluation.judge_dir(manager.models_dir, grading.run) / "cache.jsonl",
            pairwise=grading.pairwise, on_progress=lambda f, text: progress(0.5 + f * 0.5, desc=text), stop=stop,
            use_judge=not grading.metrics_only, server=status, group_by=(grading.group_by or "task").strip())
    except PlaygroundError as exc:
        return notice(str(exc), "error"), *skip
    return (finished_message(result.summary, manager.run_data(grading.run).note, result.against)
            + kept_note(manager, grading),
            *show(evaluation.latest_grading(manager.models_dir, grading.run, against=result.against)))


def kept_note(manager: Any, grading: SimpleNamespace) -> str:
    """Which grading Compare and model cards quote: after one by reference metrics only, the last judge
    grading; after one against another model than the base, still one against the base."""
    if (grading.against or BASE) != BASE:
        return notice("Compare and model cards quote gradings against the base model only; this one is shown "
                      "again when you pick the same run and the same “Compare with”.", "info")
    judged = evaluation.latest_grading(manager.models_dir, grading.run, judged=True, against=BASE) \
        if grading.metrics_only else None
    return notice(f"The last judge grading of this run ({judged['grading']}) stays the one Compare and model "
                  "cards quote; it is shown again when you come back to this run.", "info") if judged else ""


def last_grading(manager: Any, run_id: str | None, against: str | None = BASE) -> tuple[Any, ...]:
    """The message and the results area for the run's last grading against the model picked in "Compare
    with" (so it is there again after a reload)."""
    try:
        saved = evaluation.quoted_grading(manager.models_dir, run_id, against or BASE) if run_id else None
    except PlaygroundError as exc:
        return notice(str(exc), "error"), *show(None)
    kind = "judge grading" if saved and saved["judge"].get("used") else "grading (reference metrics only, no judge)"
    other = "" if saved is None or saved["against"] == BASE else f" against {compared_name(saved)}"
    text = notice(EMPTY, "info") if saved is None else notice(
        f"The last {kind} of this run{other} ({saved['grading']}); grade again for another split or size.", "info")
    return text, *show(saved)


def compared_labels(against: str | None) -> tuple[Any, Any]:
    """The Grade button's and the pairwise box's labels, naming the model the run is compared with."""
    other = side_name(against)
    return (gr.update(value=f"Grade {other} and tuned"),
            gr.update(label=f"Also compare {other} and tuned pairwise, both orders"))


def picked_example(shown: dict[str, Any], event: gr.SelectData) -> str:
    """The drill-down of the row clicked (`shown`: the table's rows in order and the compared model's name)."""
    rows, row = (shown or {}).get("rows", []), event.index[0] if event and event.index else None
    return drill_down(rows[row], shown["other"]) if row is not None and row < len(rows) else ""


def build(shared: Shared, tab: gr.Tab) -> None:
    manager, stops = shared.manager, SessionStops()
    ui = layout(manager)
    grading, server = ui.grading, ui.server

    ui.check.click(lambda *values: check_server(server.read(values)), server.inputs(), [ui.server_status, ui.pull])
    ui.server.api.input(None, [server.api, server.host], server.host, js=usual_host_js())

    def on_pull(progress=gr.Progress(), *values):
        return pull_model(server.read(values), progress)

    ui.pull.click(on_pull, server.inputs(), [ui.server_status, ui.pull])

    def on_grade(request: gr.Request, progress=gr.Progress(), *values):
        asked, settings = grading.read(values[:len(grading.inputs())]), server.read(values[len(grading.inputs()):])
        return grade(manager, asked, settings, stops.fresh(request), progress)

    ui.grade.click(on_grade, [*grading.inputs(), *server.inputs()], [ui.message, *ui.result_outputs],
                   show_progress_on=[ui.message])
    ui.rows.select(picked_example, ui.shown_rows, ui.detail)

    def on_stop(request: gr.Request):
        stops.stop(request)
        return notice("Stopping: what was graded is kept; grade again to finish the rest.", "warn")

    ui.stop.click(on_stop, None, ui.message)

    def picked_against(run_id, against):
        """The labels naming the model picked, and the run's last grading against it."""
        return *compared_labels(against), *last_grading(manager, run_id, against)

    def picked_run(run_id, against):
        """The models this run can be compared with (the current pick kept while listed), and the rest."""
        update = against_update(manager, run_id, against)
        return update, *picked_against(run_id, update.get("value"))

    def refresh_runs(current, against):
        update = run_update(manager, current)
        return update, *picked_run(update.get("value"), against)

    shown = [ui.grade, grading.pairwise, ui.message, *ui.result_outputs]
    grading.run.change(picked_run, [grading.run, grading.against], [grading.against, *shown])
    grading.against.input(picked_against, [grading.run, grading.against], shown)
    gr.on([shared.app.load, tab.select], refresh_runs, [grading.run, grading.against],
          [grading.run, grading.against, *shown])
    relabel_runs(manager, grading.run)
    remember(shared, {"api": server.api, "host": server.host, "model": server.model, "key_env": server.key_env},
             "judge-server", cleaned={"host": lambda host: without_credentials(host or "")[0]})


EMPTY = ("No grading of this run yet against this model. Press Grade: the report card appears here with each "
         "average and its 95% interval, the score distributions, averages per task and every example.")


def show(saved: dict[str, Any] | None) -> tuple[Any, ...]:
    """The results area's updates for a saved grading (see evaluation.latest_grading), or hidden."""
    if saved is None:
        return gr.update(visible=False), "", None, None, None, "", None, {}
    cards, scores, groups, frame, widths, ordered = views(saved)
    return (gr.update(visible=True), cards, scores, groups, gr.update(value=frame, column_widths=widths), "",
            saved["files"], {"rows": ordered, "other": compared_name(saved)})


def finished_message(summary: dict[str, Any], note: str, against: str = BASE) -> str:
    """The first lines of the report; a warning when answers were left ungraded, with why."""
    lines = evaluation.summary_lines(summary, against=against)[:2]
    missing = sum((summary.get(side) or {}).get(key, 0) for side in ("base", "tuned") for key in ("errors", "skipped"))
    text = notice(" · ".join(lines) or "Reference metrics computed.", "warn" if missing else "ok")
    return text + (notice(note, "warn") if note else "")
