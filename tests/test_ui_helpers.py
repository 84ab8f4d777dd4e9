"""The tabs' pure helpers, on real runs of the tiny model: what the Train tab shows while a run goes."""

import os
from pathlib import Path

from playground import runs
from playground.manager import ModelManager, TrainingJob
from playground.training import Event, TrainConfig
from playground.ui import train_tab
from tests_helpers import small_dataset


def test_a_run_reports_its_phases_in_order_and_the_progress_line_names_them(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    config = TrainConfig(model=str(tiny_model_dir), max_steps=4, batch_size=2, probes=1, probe_every=2, eval_every=2,
                         lora_r=4, lora_alpha=8)
    job = manager.start_training(small_dataset(), config)
    job.thread.join(120)
    assert job.state == "finished", job.message
    phases = [e.values["phase"] for e in job.events if e.kind == "phase"]
    # before training: probe, validate; at step 2: validate, probe, back to training; at the end: save
    assert phases == ["probing", "validating", "training", "validating", "probing", "training",
                      "validating", "probing", "saving"]
    done = train_tab.progress_html(job.snapshot())
    assert "step <b>4</b> of 4" in done and "Finished after 4 of 4 steps" in done
    assert "mean of the last 4 steps" in done
    assert runs.read(tmp_path, job.run_id).status["state"] == "finished"


def test_probe_table_has_one_answer_column_until_a_second_round(tiny_model_dir, tmp_path):
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    job = manager.start_training(small_dataset(), TrainConfig(model=str(tiny_model_dir), max_steps=2, batch_size=2,
                                                              probes=1, probe_every=0, eval_every=0))
    job.thread.join(120)
    events = list(job.events)
    first_round = events[:next(i for i, e in enumerate(events) if e.kind == "probe") + 1]
    assert train_tab.probes_html(first_round).count("answer at step") == 1
    table = train_tab.probes_html(events)
    assert "answer at step 0" in table and "answer at step 2" in table


def test_a_starting_run_shows_its_phase_no_empty_figures_and_is_listed(tmp_path):
    job = TrainingJob("20260101-000000-lora", TrainConfig(), tmp_path / "runs" / "20260101-000000-lora")
    line = train_tab.progress_html(job.snapshot())
    assert "Loading the model" in line and "elapsed" in line
    assert "step 0 of 0" not in line and "remaining" not in line
    assert train_tab.loss_figure(job.events) is None
    frame = train_tab.runs_frame(tmp_path, job.snapshot())
    assert list(frame["run"]) == [job.run_id] and list(frame["state"]) == ["loading the model"]


def test_an_unknown_hub_id_fails_at_once_with_the_reason_when_the_hub_cannot_be_reached(tmp_path):
    import pytest

    from playground import store

    if store.hub_reachable():
        pytest.skip("the hub answers here")
    manager = ModelManager(tmp_path)
    future = manager.request_tokenizer("nobody/no-such-model")
    future.exception(timeout=None)
    status = manager.tokenizer_status("nobody/no-such-model")
    assert status.state == "error"
    assert "The Hugging Face hub cannot be reached" in status.message and "give a local folder" in status.message


def test_a_dataset_page_holds_the_rows_of_the_whole_searched_table():
    from playground import data
    from playground.ui import dataset_tab

    dataset = data.load(data.BUILTIN)
    frame = dataset.to_frame()
    frame.insert(0, "#", range(len(frame)))
    found = frame[frame["output"].str.lower().str.contains("paris") | frame["instruction"].str.lower().str.contains(
        "paris") | frame["input"].str.lower().str.contains("paris") | frame["task"].str.lower().str.contains("paris")]
    for query, whole in (("", frame), ("Paris", found)):
        shown, page, caption = dataset_tab.page_of(dataset, query, 2, 10)
        expected = whole.iloc[10:20][dataset_tab.TABLE_COLUMNS].reset_index(drop=True)
        assert page == 2 and shown.astype(str).equals(expected.astype(str))
    assert dataset_tab.page_of(dataset, "", 999, 10)[1] == 120


def test_the_length_histogram_says_when_it_draws_a_sample(default_tokenizer):
    from playground import data
    from playground.ui import dataset_tab

    dataset = data.load(data.BUILTIN)
    assert "sample" not in dataset_tab.length_histogram(dataset, default_tokenizer).layout.title.text
    title = dataset_tab.length_histogram(dataset, default_tokenizer, sample=500).layout.title.text
    assert "a uniform sample of 500 of 1,196 records" in title


def test_a_slow_trained_rate_never_reads_as_zero():
    from playground.training import Event

    steps = [Event("step", step, values={"input_tokens_per_s": 212.4, "tokens_per_s": 0.43}) for step in (1, 2)]
    assert train_tab.speed_text(steps) == " · 212 tokens/s (0.43 trained; mean of the last 2 steps)"
    assert train_tab.rate(1234.6) == "1,235" and train_tab.rate(9.87) == "9.9" and train_tab.rate(0.0) == "0"


def test_a_resumed_run_counts_its_time_left_from_its_own_pace_and_its_time_before_resume():
    """Resumed at step 5 after 100 s: two steps of 10 s each leave 3 steps, 30 s; the clock counts the 100 s too."""
    point = {"train_loss": 1.0, "lr": 1e-4, "trained_tokens": 0, "tokens_per_s": 50.0, "input_tokens_per_s": 80.0}
    earlier = [Event("step", step, 10, elapsed=20.0 * step, values=point) for step in range(1, 6)]
    now = [Event("resume", 5, 10, elapsed=100.0, values={"from_step": 5}),
           Event("phase", 5, 10, elapsed=100.0, values={"phase": "training"}),
           Event("step", 6, 10, elapsed=110.0, values=point), Event("step", 7, 10, elapsed=120.0, values=point)]
    steps = [e for e in earlier + now if e.kind == "step"]
    assert train_tab.remaining_seconds(earlier + now, steps) == 30.0
    assert train_tab.remaining_seconds(earlier + now[:2], steps[:5]) is None  # no step since Resume yet

    job = TrainingJob("20260101-000000-lora", TrainConfig(max_steps=10), Path("/nonexistent"), events=earlier + now,
                      resume=object())
    job.started -= 25  # this part of the run has taken 25 s so far
    line = train_tab.progress_html(job.snapshot())
    assert "elapsed 2:05 (0:25 since Resume)" in line


def test_every_figure_s_legend_stays_clear_of_the_plotly_toolbar_at_the_top_right():
    from playground.inspection import FamilyLoss
    from playground.ui import inspect_tab, judge_report

    point = {"train_loss": 1.0, "lr": 1e-4, "trained_tokens": 0, "tokens_per_s": 50.0, "input_tokens_per_s": 80.0}
    curve = [Event("step", step, 6, values=point) for step in range(1, 6)] + [Event("eval", 5, 6, values={"val_loss": 1.1})]
    rows = [{"base_score": 40, "tuned_score": 70, "base_rouge_l": 0.2, "tuned_rouge_l": 0.5, "task": "math"}]
    figures = {"train curve": train_tab.loss_figure(curve),
               "task families": inspect_tab.families_figure([FamilyLoss("math", 2, 10, 2.0, 1.5)]),
               "score distribution": judge_report.distribution(rows),
               "groups": judge_report.groups_figure({}, rows, judged=False)}
    for name, figure in figures.items():
        legend = figure.layout.legend
        assert legend.xanchor == "left" and legend.x == 0, name


def test_the_runs_signature_changes_when_a_run_is_saved_or_its_status_changes(tmp_path):
    from playground import runs
    from playground.manager import ModelManager
    from playground.ui.common import runs_signature

    manager = ModelManager(tmp_path)
    empty = runs_signature(manager)
    assert empty == [None, False, []]  # no runs folder yet: no error
    writer = runs.RunWriter(tmp_path, "run-1", {"settings": {}})
    started = runs_signature(manager)
    assert started != empty and started[2][0][0] == "run-1"
    writer.status("stopped", "Stopped.", step=1)
    stamp = (writer.folder / "status.json").stat().st_mtime_ns
    os.utime(writer.folder / "status.json", ns=(stamp + 10**9, stamp + 10**9))  # a coarse clock still differs
    assert runs_signature(manager) != started
    assert runs_signature(manager) == runs_signature(manager)  # nothing changed: nothing to read again


def test_every_view_that_follows_a_change_draws_again_after_a_change_during_drawing(tiny_model_dir, tmp_path):
    """A listener that a change triggers must not drop a change that comes while it runs: picking the
    Custom style and typing a template at once would leave the preview on the default template."""
    from playground.ui.app import build_app
    demo = build_app(ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir)))
    dropping = []
    for fn in demo.fns.values():
        events = {event for _, event in fn.targets}
        if "change" in events and fn.trigger_mode == "once":
            dropping.append((getattr(fn.fn, "__name__", fn.fn), sorted(events)))
    assert not dropping, dropping
    follows = [fn for fn in demo.fns.values() if "load" in {e for _, e in fn.targets}
               and "change" in {e for _, e in fn.targets}]
    assert len(follows) >= 6 and all(fn.trigger_mode == "always_last" for fn in follows)
