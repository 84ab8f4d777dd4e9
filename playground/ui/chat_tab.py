"""Chat tab: one message, two answers streamed side by side (base and tuned), and a blind A/B vote.

The conversation of a browser session is kept as text in a State (message, input, base answer,
tuned answer per turn); the two chat panes are drawn from it and never read back.
"""

from __future__ import annotations

import html
import random
from typing import Any

import gradio as gr

from .. import runs, store
from ..errors import PlaygroundError
from ..generation import GenerationSettings, stream
from ..prompts import Turn, conversation
from ..votes import save_vote, tally
from .common import Shared, notice

VOTES = {"left": "left is better", "right": "right is better", "tie": "tie", "both_bad": "both bad"}


def run_choices(manager: Any) -> list[tuple[str, str]]:
    """Runs that can answer: saved adapters or weights, and the run training now (live weights)."""
    choices = []
    job = manager.job
    if job is not None and job.running:
        choices.append((f"● training now: {job.run_id} (latest step)", job.run_id))
    for record in runs.list_runs(manager.models_dir):
        if record.has_weights and not (job is not None and job.running and job.run_id == record.run_id):
            choices.append((f"{record.run_id} · {record.settings.get('method', '?')} · {record.state}", record.run_id))
    return choices


def run_update(manager: Any, current: str | None) -> Any:
    """Fresh run choices for a dropdown, keeping the current pick while it is still there."""
    choices = run_choices(manager)
    ids = [value for _, value in choices]
    return gr.update(choices=choices, value=current if current in ids else (ids[0] if ids else None))


def pane_name(name: str) -> str:
    return f'<div class="pg-pane-name">{html.escape(name)}</div>'


def shown(turn: dict[str, str]) -> str:
    return turn["message"] + (f"\n\n{turn['input']}" if turn["input"] else "")


def panes(turns: list[dict[str, str]], tuned_is_left: bool) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The two chat panes drawn from the conversation: base left and tuned right, unless swapped."""
    def pane(side: str) -> list[dict[str, str]]:
        return [m for t in turns for m in ({"role": "user", "content": shown(t)},
                                           {"role": "assistant", "content": t[side]})]
    base, tuned = pane("base"), pane("tuned")
    return (tuned, base) if tuned_is_left else (base, tuned)


def history(turns: list[dict[str, str]], side: str) -> list[Turn]:
    return [Turn(t["message"], t[side], t["input"]) for t in turns]


def tally_html(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return ""
    return (f'<div id="vote-tally" style="font-size:13px">Blind votes for this run: tuned better <b>{counts["tuned"]}</b> · '
            f'base better <b>{counts["base"]}</b> · tie <b>{counts["tie"]}</b> · both bad <b>{counts["both_bad"]}</b> '
            f'({total} in all)</div>')


def example_choices(found: Any, limit: int = 40) -> list[tuple[str, int]]:
    """Instructions from the run's own test split (never from records it trained on)."""
    return [(f"#{i} · {found.dataset.records[i].instruction[:70]}", i) for i in found.splits.test[:limit]]


def build(shared: Shared) -> dict[str, Any]:
    manager = shared.manager
    gr.Markdown("Both sides answer the same message with the same settings, in the run's own prompt style. "
                "Base is the shared weights with every adapter off; Tuned switches the run's adapter on.")
    with gr.Row(equal_height=True):
        run = gr.Dropdown(run_choices(manager), label="Tuned run", scale=3, elem_id="chat-run")
        refresh = gr.Button("↻ Runs", scale=0, elem_id="chat-refresh")
        raw = gr.Checkbox(label="Raw (no prompt template)", scale=1, elem_id="chat-raw")
        blind = gr.Checkbox(label="Blind A/B (shuffled, unnamed)", scale=1, elem_id="chat-blind")
    run_info = gr.HTML(elem_id="chat-run-info")
    with gr.Accordion("Generation settings (same for both sides)", open=False, elem_id="chat-settings"):
        with gr.Row():  # three to a row: room for each label beside its number box
            max_new = gr.Slider(1, 512, value=64, step=1, label="Max new tokens", min_width=280, elem_id="chat-max-new")
            temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0: greedy)", min_width=280)
            seed = gr.Number(value=123, precision=0, label="Seed", min_width=280)
        with gr.Row():
            top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p", min_width=280)
            top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k (0: off)", min_width=280)
            penalty = gr.Slider(0.5, 2, value=1, step=0.05, label="Repetition penalty", min_width=280)
    with gr.Row():
        # The names sit above the panes, not on them (a pane's own label covers its first lines).
        # Answers are shown as the model wrote them: "### Response:" is text, not a Markdown heading.
        with gr.Column():
            left_name = gr.HTML(pane_name("Base"), elem_id="chat-left-name")
            left = gr.Chatbot(show_label=False, height=380, buttons=["copy", "copy_all"], render_markdown=False,
                              elem_id="chat-left")
        with gr.Column():
            right_name = gr.HTML(pane_name("Tuned"), elem_id="chat-right-name")
            right = gr.Chatbot(show_label=False, height=380, buttons=["copy", "copy_all"], render_markdown=False,
                               elem_id="chat-right")
    reference = gr.HTML(elem_id="chat-reference")
    with gr.Row(visible=False) as vote_row:
        vote_buttons = {key: gr.Button(label, size="sm", elem_id=f"vote-{key}") for key, label in VOTES.items()}
    votes = gr.HTML(elem_id="chat-votes")
    error = gr.HTML(elem_id="chat-error")
    with gr.Row(equal_height=True):
        with gr.Column(scale=4):
            message = gr.Textbox(label="Message", placeholder="Type an instruction…", lines=2, elem_id="chat-message")
            input_box = gr.Textbox(label="Input (optional: the record's ### Input section)", lines=2, max_lines=8,
                                   elem_id="chat-input")
        with gr.Column(scale=1, min_width=150):
            send = gr.Button("Send", variant="primary", elem_id="chat-send")
            stop = gr.Button("Stop", variant="stop", elem_id="chat-stop")
    with gr.Row():
        regenerate = gr.Button("Regenerate", size="sm", elem_id="chat-regenerate")
        clear = gr.Button("Clear", size="sm", elem_id="chat-clear")
    with gr.Row(equal_height=True):
        example = gr.Dropdown([], label="Example instructions from the run's test split", scale=4,
                              elem_id="chat-example")
        use_example = gr.Button("Use example", scale=1, elem_id="chat-use-example")

    turns = gr.State([])            # the conversation, as text (see the module docstring)
    pending = gr.State(None)        # the message being answered: {"message", "input"}
    tuned_left = gr.State(False)    # blind mode: which side the tuned model is shown on

    def labels(blind_on: bool, tuned_is_left: bool, shown_names: bool):
        if not blind_on or shown_names:
            names = ("Tuned", "Base") if tuned_is_left else ("Base", "Tuned")
        else:
            names = ("Model A", "Model B")
        return pane_name(names[0]), pane_name(names[1])

    def describe_run(run_id):
        if not run_id:
            return notice("Train a run first (Train tab), or pick one here.", "info"), gr.update(choices=[], value=None)
        job = manager.job
        if job is not None and job.run_id == run_id and job.side is None and job.running:
            return notice(f"Run {run_id} is starting: {job.message}", "info"), gr.update(choices=[], value=None)
        try:
            record = runs.read(manager.models_dir, run_id)
            found = manager.run_data(run_id)
        except PlaygroundError as exc:
            return notice(str(exc), "error"), gr.update(choices=[], value=None)
        settings = record.settings
        memory = manager.memory_report()
        line = (f"Run <b>{html.escape(run_id)}</b>: {settings.get('method')} on <b>{html.escape(settings.get('model', '?'))}</b>, "
                f"style <b>{html.escape(settings.get('style', '?'))}</b>, {record.state}; trained on "
                f"{html.escape(found.dataset.source)} (test split: {len(found.splits.test):,} records).")
        if settings.get("method") == "full":
            line += " A full fine-tune answers from its own copy of the weights: memory doubles."
        if memory["base"]:
            line += (f" Weights in memory: base {memory['base'] / 2**20:,.0f} MiB + adapters "
                     f"{memory['adapters'] / 2**20:,.1f} MiB" + (f" + full copies {memory['full_copies'] / 2**20:,.0f} MiB"
                                                                  if memory["full_copies"] else "") + ".")
        info = f'<div style="font-size:13px;color:#374151">{line}</div>' + tally_html(tally(manager.models_dir, run_id))
        if found.note:
            info += notice(found.note, "warn")
        return info, gr.update(choices=example_choices(found), value=None)

    def respond(asked, conversation_so_far, run_id, raw_on, blind_on, tuned_is_left,
                max_tokens, temp, p, k, rep, seed_value):
        if not asked:
            return
        if not run_id:
            raise gr.Error("Pick a tuned run first (train one in the Train tab).")
        settings = GenerationSettings(int(max_tokens), float(temp), float(p), int(k), float(rep), int(seed_value or 0))
        try:
            settings.check()
            tuned, record = manager.tuned_side(run_id)
            spec = record.settings.get("model", store.DEFAULT)
            base = manager.base_side(spec)
            tokenizer = manager.tokenizer(spec)
            style, template = record.settings.get("style", "alpaca"), record.settings.get("template")
            rows = [(side, conversation(history(conversation_so_far, name), asked["message"], style, tokenizer,
                                        template, raw_on, asked["input"]))
                    for side, name in ((base, "base"), (tuned, "tuned"))]
        except PlaygroundError as exc:
            raise gr.Error(str(exc)) from None
        swapped = bool(blind_on and tuned_is_left)
        for base_answer, tuned_answer in stream(rows, tokenizer, style, settings):
            now = conversation_so_far + [{**asked, "base": base_answer, "tuned": tuned_answer}]
            yield *panes(now, swapped), now

    gen_inputs = [max_new, temperature, top_p, top_k, penalty, seed]
    chat_inputs = [pending, turns, run, raw, blind, tuned_left, *gen_inputs]
    chat_outputs = [left, right, turns]

    def take(text, input_text):
        text = (text or "").strip()
        if not text:
            return gr.update(), gr.update(), None, notice("Type a message first.", "error")
        return "", "", {"message": text, "input": (input_text or "").strip()}, ""

    take_outputs = [message, input_box, pending, error]
    sent = send.click(take, [message, input_box], take_outputs).then(respond, chat_inputs, chat_outputs)
    submitted = message.submit(take, [message, input_box], take_outputs).then(respond, chat_inputs, chat_outputs)

    def drop_last(conversation_so_far, blind_on, tuned_is_left):
        if not conversation_so_far:
            return gr.update(), gr.update(), conversation_so_far, None, notice("Nothing to regenerate yet.", "error")
        last = conversation_so_far[-1]
        rest = conversation_so_far[:-1]
        return (*panes(rest, bool(blind_on and tuned_is_left)), rest,
                {"message": last["message"], "input": last["input"]}, "")

    regenerated = regenerate.click(drop_last, [turns, blind, tuned_left], [left, right, turns, pending, error]).then(
        respond, chat_inputs, chat_outputs)
    for event in (sent, submitted, regenerated):
        event.then(lambda b, t: gr.update(visible=bool(b and t)), [blind, turns], vote_row)
    stop.click(None, cancels=[sent, submitted, regenerated])

    def start_over(blind_on):
        tuned_is_left = bool(blind_on and random.random() < 0.5)
        left_label, right_label = labels(blind_on, tuned_is_left, not blind_on)
        return [], [], [], tuned_is_left, left_label, right_label, gr.update(visible=False), "", ""

    reset_outputs = [left, right, turns, tuned_left, left_name, right_name, vote_row, votes, reference]
    for event in (clear.click, blind.change, left.clear, right.clear):  # the panes' own bin clears it all
        event(start_over, blind, reset_outputs)

    def vote(choice, conversation_so_far, run_id, tuned_is_left):
        if not run_id or not conversation_so_far:
            raise gr.Error("Send a message and read both answers before voting.")
        tuned_side_name = "left" if tuned_is_left else "right"
        winner = {"tie": "tie", "both_bad": "both_bad"}.get(choice) or ("tuned" if choice == tuned_side_name else "base")
        last = conversation_so_far[-1]
        save_vote(manager.models_dir, run_id, last["message"], last["input"], winner, tuned_side_name)
        left_label, right_label = labels(True, tuned_is_left, True)
        names = f"Left was <b>{'Tuned' if tuned_is_left else 'Base'}</b>, right was <b>{'Base' if tuned_is_left else 'Tuned'}</b>."
        result = notice(f"Vote saved: {winner.replace('_', ' ')}.", "ok") + f"<div>{names}</div>"
        return left_label, right_label, gr.update(visible=False), result + tally_html(tally(manager.models_dir, run_id))

    for key, button in vote_buttons.items():
        button.click(lambda c, r, t, key=key: vote(key, c, r, t), [turns, run, tuned_left],
                     [left_name, right_name, vote_row, votes])

    def pick_example(index, run_id):
        if index is None or not run_id:
            raise gr.Error("Pick an example first.")
        record = manager.run_data(run_id).dataset.records[int(index)]
        filled = "the message and its Input section are" if record.input else "the message is"
        shown_reference = (f"Test record #{index}: {filled} filled in below; Send asks both models."
                           + (f"<div><b>Input</b></div><div class='pg-text' id='chat-example-input'>"
                              f"{html.escape(record.input)}</div>" if record.input else "")
                           + f"<div><b>Reference answer</b></div><div class='pg-text'>{html.escape(record.output)}</div>")
        return record.instruction, record.input, shown_reference

    use_example.click(pick_example, [example, run], [message, input_box, reference])

    def refresh_runs(current):
        return run_update(manager, current)

    refresh.click(refresh_runs, run, run)
    run.change(describe_run, run, [run_info, example])
    describe = [(describe_run, [run], [run_info, example])]
    return {"refreshers": [(refresh_runs, [run], [run]), *describe], "refresh_runs": (refresh_runs, [run], [run]),
            "after_refresh": describe}
