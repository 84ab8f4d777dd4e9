"""Chat tab: one message, two answers streamed side by side (base and tuned), and a blind A/B vote."""

from __future__ import annotations

import html
import json
import random
import time
from pathlib import Path
from typing import Any

import gradio as gr

from .. import runs, store
from ..data import Dataset
from ..errors import PlaygroundError
from ..generation import GenerationSettings, Turn, chat_prompt, stream_sides
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
            settings = record.config.get("settings", {})
            choices.append((f"{record.run_id} · {settings.get('method', '?')} · {record.state}", record.run_id))
    return choices


def run_update(manager: Any, current: str | None) -> Any:
    """Fresh run choices for a dropdown, keeping the current pick while it is still there."""
    choices = run_choices(manager)
    ids = [value for _, value in choices]
    return gr.update(choices=choices, value=current if current in ids else (ids[0] if ids else None))


def history(chat: list[dict[str, Any]]) -> list[Turn]:
    """Completed turns of one side's conversation, from the chatbot's messages."""
    turns, user = [], None
    for message in chat:
        if message["role"] == "user":
            user = message["content"]
        elif user is not None:
            turns.append(Turn(user, message["content"]))
            user = None
    return turns


def votes_path(models_dir: Path, run_id: str) -> Path:
    return runs.runs_dir(models_dir) / run_id / "votes.jsonl"


def save_vote(models_dir: Path, run_id: str, prompt: str, winner: str, tuned_side: str) -> None:
    """winner is base, tuned, tie or both_bad; appended to the run's votes.jsonl."""
    path = votes_path(models_dir, run_id)
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps({"time": time.time(), "prompt": prompt, "winner": winner,
                               "tuned_was": tuned_side}, ensure_ascii=False) + "\n")


def tally(models_dir: Path, run_id: str) -> dict[str, int]:
    counts = {"tuned": 0, "base": 0, "tie": 0, "both_bad": 0}
    path = votes_path(models_dir, run_id)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                counts[json.loads(line)["winner"]] += 1
            except (json.JSONDecodeError, KeyError):
                continue
    return counts


def tally_html(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return ""
    return (f'<div id="vote-tally" style="font-size:13px">Blind votes for this run: tuned better <b>{counts["tuned"]}</b> · '
            f'base better <b>{counts["base"]}</b> · tie <b>{counts["tie"]}</b> · both bad <b>{counts["both_bad"]}</b> '
            f'({total} in all)</div>')


def example_choices(dataset: Dataset, limit: int = 40) -> list[tuple[str, int]]:
    test = dataset.splits().test[:limit]
    return [(f"#{i} · {dataset.records[i].instruction[:70]}", i) for i in test]


def build(shared: Shared) -> dict[str, Any]:
    manager = shared.manager
    gr.Markdown("Both sides answer the same message with the same settings, in the run's own prompt style. "
                "Base is the shared weights with the adapter switched off; Tuned switches the run's adapter on.")
    with gr.Row(equal_height=True):
        run = gr.Dropdown(run_choices(manager), label="Tuned run", scale=3, elem_id="chat-run")
        refresh = gr.Button("↻ Runs", scale=0, elem_id="chat-refresh")
        raw = gr.Checkbox(label="Raw (no prompt template)", scale=1, elem_id="chat-raw")
        blind = gr.Checkbox(label="Blind A/B (shuffled, unnamed)", scale=1, elem_id="chat-blind")
    run_info = gr.HTML(elem_id="chat-run-info")
    with gr.Accordion("Generation settings (same for both sides)", open=False, elem_id="chat-settings"):
        with gr.Row():
            max_new = gr.Slider(1, 512, value=64, step=1, label="Max new tokens", elem_id="chat-max-new")
            temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0: greedy)")
            top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p")
            top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k (0: off)")
            penalty = gr.Slider(0.5, 2, value=1, step=0.05, label="Repetition penalty")
            seed = gr.Number(value=123, precision=0, label="Seed")
    with gr.Row():
        left = gr.Chatbot(label="Base", height=380, buttons=["copy", "copy_all"], elem_id="chat-left")
        right = gr.Chatbot(label="Tuned", height=380, buttons=["copy", "copy_all"], elem_id="chat-right")
    reference = gr.HTML(elem_id="chat-reference")
    with gr.Row(visible=False) as vote_row:
        vote_buttons = {key: gr.Button(label, size="sm", elem_id=f"vote-{key}") for key, label in VOTES.items()}
    votes = gr.HTML(elem_id="chat-votes")
    with gr.Row(equal_height=True):
        message = gr.Textbox(label="Message", placeholder="Type an instruction…", scale=4, lines=2, elem_id="chat-message")
        with gr.Column(scale=1, min_width=150):
            send = gr.Button("Send", variant="primary", elem_id="chat-send")
            stop = gr.Button("Stop", variant="stop", elem_id="chat-stop")
    with gr.Row():
        regenerate = gr.Button("Regenerate", size="sm", elem_id="chat-regenerate")
        clear = gr.Button("Clear", size="sm", elem_id="chat-clear")
    with gr.Row(equal_height=True):
        example = gr.Dropdown([], label="Example instructions from the test split", scale=4, elem_id="chat-example")
        use_example = gr.Button("Use example", scale=1, elem_id="chat-use-example")

    tuned_left = gr.State(False)   # blind mode: which side the tuned model is shown on
    example_record = gr.State(None)  # index of the example the message came from
    revealed = gr.State(True)

    def labels(blind_on: bool, tuned_is_left: bool, shown: bool):
        if not blind_on or shown:
            names = ("Tuned", "Base") if tuned_is_left else ("Base", "Tuned")
        else:
            names = ("Model A", "Model B")
        return gr.update(label=names[0]), gr.update(label=names[1])

    def describe_run(run_id):
        if not run_id:
            return notice("Train a run first (Train tab), or pick one here.", "info")
        try:
            record = runs.read(manager.models_dir, run_id)
        except PlaygroundError as exc:
            return notice(str(exc), "error")
        settings = record.config.get("settings", {})
        memory = manager.memory_report()
        line = (f"Run <b>{html.escape(run_id)}</b>: {settings.get('method')} on <b>{html.escape(settings.get('model', '?'))}</b>, "
                f"style <b>{html.escape(settings.get('style', '?'))}</b>, {record.state}.")
        if settings.get("method") == "full":
            line += " A full fine-tune answers from its own copy of the weights: memory doubles."
        if memory["base"]:
            line += (f" Weights in memory: base {memory['base'] / 2**20:,.0f} MiB + adapters "
                     f"{memory['adapters'] / 2**20:,.1f} MiB" + (f" + full copies {memory['full_copies'] / 2**20:,.0f} MiB"
                                                                  if memory["full_copies"] else "") + ".")
        return f'<div style="font-size:13px;color:#374151">{line}</div>' + tally_html(tally(manager.models_dir, run_id))

    def respond(text, left_chat, right_chat, run_id, raw_on, blind_on, tuned_is_left, example_index, dataset,
                max_tokens, temp, p, k, rep, seed_value):
        text = (text or "").strip()
        if not text:
            raise gr.Error("Type a message first.")
        if not run_id:
            raise gr.Error("Pick a tuned run first (train one in the Train tab).")
        settings = GenerationSettings(int(max_tokens), float(temp), float(p), int(k), float(rep), int(seed_value or 0))
        try:
            settings.check()
            tuned, run_settings = manager.tuned_side(run_id)
            base = manager.base_side(run_settings.get("model", store.DEFAULT))
            tokenizer = manager.tokenizer(run_settings.get("model", store.DEFAULT))
        except PlaygroundError as exc:
            raise gr.Error(str(exc)) from None
        style, template = run_settings.get("style", "alpaca"), run_settings.get("template")
        base_chat, tuned_chat = (right_chat, left_chat) if (blind_on and tuned_is_left) else (left_chat, right_chat)
        record = dataset.records[example_index] if example_index is not None else None
        user_input = record.input if record is not None and text == record.instruction else ""
        try:
            base_prompt = chat_prompt(history(base_chat), text, style, tokenizer, template, raw_on, user_input)
            tuned_prompt = chat_prompt(history(tuned_chat), text, style, tokenizer, template, raw_on, user_input)
        except PlaygroundError as exc:
            raise gr.Error(str(exc)) from None
        shown = text + (f"\n\n{user_input}" if user_input else "")
        base_chat = base_chat + [{"role": "user", "content": shown}, {"role": "assistant", "content": ""}]
        tuned_chat = tuned_chat + [{"role": "user", "content": shown}, {"role": "assistant", "content": ""}]
        for base_answer, tuned_answer in stream_sides([base, tuned], [base_prompt, tuned_prompt], tokenizer, style,
                                                      settings, manager.lock):
            base_chat[-1] = {"role": "assistant", "content": base_answer}
            tuned_chat[-1] = {"role": "assistant", "content": tuned_answer}
            yield (tuned_chat, base_chat) if (blind_on and tuned_is_left) else (base_chat, tuned_chat)

    pending = gr.State("")  # the message being answered; the box is cleared for the next one
    gen_inputs = [max_new, temperature, top_p, top_k, penalty, seed]
    chat_inputs = [pending, left, right, run, raw, blind, tuned_left, example_record, shared.dataset, *gen_inputs]
    take = lambda text: ("", text)  # noqa: E731
    sent = send.click(take, message, [message, pending]).then(respond, chat_inputs, [left, right])
    submitted = message.submit(take, message, [message, pending]).then(respond, chat_inputs, [left, right])
    for event in (sent, submitted):
        event.then(lambda b: gr.update(visible=b), blind, vote_row)

    def drop_last(left_chat, right_chat):
        turns = history(left_chat)
        if not turns:
            raise gr.Error("Nothing to regenerate yet.")
        return left_chat[:-2], right_chat[:-2], turns[-1].user.split("\n\n")[0]

    regenerated = regenerate.click(drop_last, [left, right], [left, right, pending]).then(respond, chat_inputs, [left, right])
    stop.click(None, cancels=[sent, submitted, regenerated])

    def start_over(blind_on):
        tuned_is_left = bool(blind_on and random.random() < 0.5)
        left_label, right_label = labels(blind_on, tuned_is_left, not blind_on)
        return [], [], tuned_is_left, not blind_on, left_label, right_label, gr.update(visible=False), "", ""

    clear.click(start_over, blind, [left, right, tuned_left, revealed, left, right, vote_row, votes, reference])
    blind.change(start_over, blind, [left, right, tuned_left, revealed, left, right, vote_row, votes, reference])

    def vote(choice, left_chat, run_id, tuned_is_left):
        turns = history(left_chat)
        if not run_id or not turns:
            raise gr.Error("Send a message and read both answers before voting.")
        tuned_side_name = "left" if tuned_is_left else "right"
        winner = {"tie": "tie", "both_bad": "both_bad"}.get(choice) or ("tuned" if choice == tuned_side_name else "base")
        save_vote(manager.models_dir, run_id, turns[-1].user, winner, tuned_side_name)
        left_label, right_label = labels(True, tuned_is_left, True)
        names = f"Left was <b>{'Tuned' if tuned_is_left else 'Base'}</b>, right was <b>{'Base' if tuned_is_left else 'Tuned'}</b>."
        result = notice(f"Vote saved: {winner.replace('_', ' ')}.", "ok") + f"<div>{names}</div>"
        return left_label, right_label, gr.update(visible=False), result + tally_html(tally(manager.models_dir, run_id)), True

    for key, button in vote_buttons.items():
        button.click(lambda l, r, t, key=key: vote(key, l, r, t), [left, run, tuned_left],
                     [left, right, vote_row, votes, revealed])

    def pick_example(index, dataset):
        if index is None:
            raise gr.Error("Pick an example first.")
        record = dataset.records[int(index)]
        shown = f"<b>Reference answer</b> (test record #{index}):<div class='pg-text'>{html.escape(record.output)}</div>"
        return record.instruction, int(index), shown

    use_example.click(pick_example, [example, shared.dataset], [message, example_record, reference])
    message.input(lambda: None, outputs=example_record)  # typed text is not the example any more
    def refresh_runs(current):
        return run_update(manager, current)

    refresh.click(refresh_runs, run, run)
    run.change(describe_run, run, run_info)

    def refresh_all(dataset, current):
        return refresh_runs(current), gr.update(choices=example_choices(dataset), value=None)

    return {"refreshers": [(refresh_all, [shared.dataset, run], [run, example])],
            "refresh_runs": (refresh_runs, [run], [run])}
