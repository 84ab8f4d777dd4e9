"""Chat tab: one message, two answers streamed side by side (the run and the model it is compared
with: the base model, or another run or checkpoint on the same base), and a blind A/B vote.

The conversation of a browser session is kept as text in a State (message, input, and per turn the
answer of the model compared with under "base", the run's under "tuned"); the two chat panes are drawn
from it and never read back. The browser keeps a copy (`SAVED`), written when an answer ends, so a
reload brings the conversation back.
"""

from __future__ import annotations

import html
import logging
import random
import threading
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr

from .. import runs
from ..errors import PlaygroundError
from ..generation import GenerationSettings, cut_note, stream
from ..model_refs import BASE, ModelRef
from ..prompts import Turn, conversation
from ..votes import save_vote, tally
from .common import (SessionStops, Shared, against_update, checkpoint_step, checkpoint_update, notice, relabel_runs,
                     run_choices, run_update)

log = logging.getLogger(__name__)

VOTES = {"left": "left is better", "right": "right is better", "tie": "tie", "both_bad": "both bad"}


# The two answer panes.
CSS = """
.pg-pane-name {font-weight: 600; font-size: 14px; color: #374151; padding: 2px 4px;}
/* a chat pane's buttons sit above its scrolling text, not over it */
#chat-left .bubble-wrap, #chat-right .bubble-wrap {margin-top: 34px; height: calc(100% - 34px); padding-top: 4px;}
"""


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


DEFAULT_NAMES = ("Base", "Tuned")  # the pane names: the model compared with, and the run


def against_ref(against: Any) -> ModelRef:
    """The "Compare with" pick as a model reference ("" or None: the base model)."""
    return against if isinstance(against, ModelRef) else ModelRef.parse(against or BASE)


def short_name(ref: ModelRef) -> str:
    """A run's name on its pane: its id for its final weights, else its label ("run X at step N")."""
    return ref.run_id if str(ref) == ref.run_id else ref.label


def side_names(run_id: str | None, checkpoint: Any, against: Any) -> tuple[str, str]:
    """The pane names (the model compared with, the run): Base and Tuned when the run is compared with
    the base model, else both models' short names."""
    other = against_ref(against)
    if other.is_base:
        return DEFAULT_NAMES
    return short_name(other), short_name(ModelRef.of_run(run_id or "?", checkpoint_step(checkpoint)))


def tally_html(counts: dict[str, int], names: tuple[str, str] = DEFAULT_NAMES) -> str:
    """The votes on the pair on screen, each side by its name."""
    total = sum(counts.values())
    if not total:
        return ""
    if names == DEFAULT_NAMES:
        head, run, other = "Blind votes for this run", "tuned", "base"
    else:
        other, run = (html.escape(name) for name in names)
        head = f"Blind votes for {run} against {other}"
    return (f'<div id="vote-tally" style="font-size:13px">{head}: {run} better <b>{counts["tuned"]}</b> · '
            f'{other} better <b>{counts["base"]}</b> · tie <b>{counts["tie"]}</b> · both bad <b>{counts["both_bad"]}</b> '
            f'({total} in all)</div>')


def example_choices(found: Any, limit: int = 40) -> list[tuple[str, int]]:
    """Instructions from the run's own test split (never from records it trained on)."""
    return [(f"#{i} · {found.dataset.records[i].instruction[:70]}", i) for i in found.splits.test[:limit]]


def labels(blind_on: bool, tuned_is_left: bool, shown_names: bool,
           names: tuple[str, str] = DEFAULT_NAMES) -> tuple[str, str]:
    """The two pane names: the model compared with and the run (`names`, Base and Tuned by default) in
    their places, or Model A and Model B while blind."""
    other, run = names
    if not blind_on or shown_names:
        shown_pair = (run, other) if tuned_is_left else (other, run)
    else:
        shown_pair = ("Model A", "Model B")
    return pane_name(shown_pair[0]), pane_name(shown_pair[1])


def names_update(blind_on: bool, tuned_is_left: bool, revealed: bool, run_id: str | None, checkpoint: Any,
                 against: Any) -> tuple[Any, ...]:
    """The pane names for the pair now picked, and the vote row hidden: the answers on screen may come
    from another pair (a vote is for the pair that answered last)."""
    return (*labels(blind_on, tuned_is_left, revealed, shown_names(run_id, checkpoint, against)),
            gr.update(visible=False))


def shown_names(run_id: str | None, checkpoint: Any, against: Any) -> tuple[str, str]:
    """`side_names`, or Base and Tuned when `against` names no model (the answer then says why)."""
    try:
        return side_names(run_id, checkpoint, against)
    except PlaygroundError:
        return DEFAULT_NAMES


def no_examples() -> Any:
    return gr.update(choices=[], value=None)


def compared_line(run_id: str, checkpoint: Any, against: Any) -> str:
    """What answers on each side, for the run's description line."""
    other = against_ref(against)
    run = ModelRef.of_run(run_id, checkpoint_step(checkpoint))
    if other.is_base:
        return " Compared with the <b>base model</b>."
    line = (f" Comparing <b>{html.escape(short_name(run))}</b> with <b>{html.escape(other.label)}</b>; "
            f"votes count for this pair.")
    return line + (" Both sides are the same weights here." if other == run else "")


def describe_run(manager: Any, run_id: str | None, checkpoint: Any = "", against: Any = BASE) -> tuple[str, Any]:
    """A line about the run (model, style, data, memory, what it is compared with, the votes on that pair)
    and its test split's examples."""
    if not run_id:
        return notice("Train a run first (Train tab), or pick one here.", "info"), no_examples()
    job = manager.job
    if job is not None and job.run_id == run_id and job.side is None and job.running:
        return notice(f"Run {run_id} is starting: {job.phase}…", "info"), no_examples()
    try:
        record = runs.read(manager.models_dir, run_id)
        found = manager.run_data(run_id)
        names = side_names(run_id, checkpoint, against)
        mismatch = other_base_model(manager, record.config.model, against)
    except PlaygroundError as exc:
        return notice(str(exc), "error"), no_examples()
    config = record.config
    memory = manager.memory_report()
    line = (f"Run <b>{html.escape(run_id)}</b>: {config.method} on <b>{html.escape(config.model)}</b>, "
            f"style <b>{html.escape(config.style)}</b>, {record.state}; trained on "
            f"{html.escape(found.dataset.source)} (test split: {len(found.splits.test):,} records).")
    if config.method == "full":
        line += " A full fine-tune answers from its own copy of the weights: memory doubles."
    if memory["base"]:
        line += (f" Weights in memory: base {memory['base'] / 2**20:,.0f} MiB + adapters "
                 f"{memory['adapters'] / 2**20:,.1f} MiB" + (f" + full copies {memory['full_copies'] / 2**20:,.0f} MiB"
                                                              if memory["full_copies"] else "") + ".")
    step = checkpoint_step(checkpoint)
    if step is not None:
        line += f" Answering with its checkpoint at step <b>{step}</b>; votes count for that checkpoint."
    line += compared_line(run_id, checkpoint, against)
    info = (f'<div style="font-size:13px;color:#374151">{line}</div>'
            + tally_html(tally(manager.models_dir, run_id, step, against_ref(against)), names))
    for problem, kind in ((mismatch, "error"), (found.note, "warn")):
        info += notice(problem, kind) if problem else ""
    return info, gr.update(choices=example_choices(found), value=None)


def other_base_model(manager: Any, spec: str, against: Any) -> str:
    """Why the model compared with cannot answer beside a run on `spec` (a run on another base model),
    or "" when it can."""
    other = against_ref(against)
    if other.is_base:
        return ""
    model = runs.read(manager.models_dir, other.run_id).config.model
    return "" if model == spec else (f"Run {other.run_id} tuned {model}, not {spec}: pick a model on the same "
                                     f"base model in \"Compare with\".")


def prepare(manager: Any, asked: dict[str, str], turns: list[dict[str, str]], run_id: str, checkpoint: Any,
            against: Any, raw_on: bool, settings: GenerationSettings) -> tuple[Any, ...]:
    """(rows, tokenizer, style) for both sides to answer `asked`, the model compared with first: loads
    the run's model the first time. A model on another base model than the run's is refused."""
    tuned, record = manager.tuned_side(run_id, checkpoint_step(checkpoint))
    spec = record.config.model
    other = manager.side(against_ref(against), spec)
    tokenizer = manager.tokenizer(spec)
    style, template = record.config.style, record.config.template
    rows = [(side, conversation(history(turns, name), asked["message"], style, tokenizer, template, raw_on,
                                asked["input"]))
            for side, name in ((other, "base"), (tuned, "tuned"))]
    return rows, tokenizer, style


def settings_from(generation: tuple[Any, ...]) -> GenerationSettings:
    max_tokens, temp, p, k, rep, seed_value = generation
    settings = GenerationSettings(int(max_tokens), float(temp), float(p), int(k), float(rep), int(seed_value or 0))
    settings.check()
    return settings


BUSY_NOTICE = ("Both models are still answering: your message stays in the box. Send it when they finish, "
               "or press Stop first.")


def buttons(ui: SimpleNamespace, answering: bool) -> dict[Any, Any]:
    """Send and Regenerate off while an answer streams, and the session's flag that says so."""
    return {ui.send: gr.update(value="Answering…" if answering else "Send", interactive=not answering),
            ui.regenerate: gr.update(interactive=not answering), ui.answering: answering}


def respond(manager: Any, ui: SimpleNamespace, new_stop: Callable[[], threading.Event], regenerating: bool,
            answering: bool, text: str, input_text: str, turns: list[dict[str, str]], run_id: str | None,
            checkpoint: Any, against: Any, raw_on: bool, blind_on: bool, tuned_is_left: bool, *generation: Any):
    """Send (the typed message) or Regenerate (the last turn again), both answers streamed (the run's
    and that of the model it is compared with, `against`); yields updates by component.

    The message shows in both panes at once, before the model loads, and is in the conversation from
    then on (a Stop keeps what was written). While the answers stream, Send and Regenerate are off and
    a message sent anyway (Shift+Enter) stays in its box with a notice. A failure puts everything back as it
    was, the message in its box, with the reason in the notice."""
    refusal = ("Pick a tuned run first (train one in the Train tab)." if not run_id else BUSY_NOTICE if answering
               else "Nothing to regenerate yet." if regenerating and not turns
               else "Type a message first." if not regenerating and not (text or "").strip() else None)
    if refusal:
        yield {ui.error: notice(refusal, "error")}
        return
    stop = new_stop()  # what this session's Stop sets from now on
    if regenerating:
        asked, kept, box = {"message": turns[-1]["message"], "input": turns[-1]["input"]}, turns[:-1], {}
    else:
        asked, kept = {"message": text.strip(), "input": (input_text or "").strip()}, turns
        box = {ui.message: "", ui.input: ""}
    swapped = bool(blind_on and tuned_is_left)

    def shown(now: list[dict[str, str]]) -> dict[Any, Any]:
        left, right = panes(now, swapped)
        return {ui.left: left, ui.right: right, ui.turns: now}

    yield {**box, **shown(kept + [{**asked, "base": "", "tuned": ""}]), ui.error: "",
           ui.vote_row: gr.update(visible=False), **buttons(ui, True)}
    try:
        settings = settings_from(generation)
        rows, tokenizer, style = prepare(manager, asked, kept, run_id, checkpoint, against, raw_on, settings)
        cut = next(filter(None, (cut_note(tokenizer, prompt, side.weights, settings) for side, prompt in rows)), "")
        if cut:
            yield {ui.error: notice(cut, "info")}
        for base_answer, tuned_answer in stream(rows, tokenizer, style, settings, stop):
            yield shown(kept + [{**asked, "base": base_answer, "tuned": tuned_answer}])
    except Exception as exc:  # the page must not stay blocked: a user's error or a bug, said in the notice
        if stop.is_set():
            return
        if not isinstance(exc, PlaygroundError):
            log.exception("Chat failed")
        put_back = {} if regenerating else {ui.message: text, ui.input: input_text}
        reason = str(exc) if isinstance(exc, PlaygroundError) else f"The answer failed: {type(exc).__name__}: {exc}"
        yield {**put_back, **shown(turns), ui.error: notice(reason, "error"), **buttons(ui, False)}
        return
    if not stop.is_set():  # after a Stop the buttons are already back, maybe in use by the next message
        yield {ui.vote_row: gr.update(visible=bool(blind_on)), **buttons(ui, False)}


def start_over(blind_on: bool, run_id: str | None = None, checkpoint: Any = "", against: Any = BASE) -> tuple[Any, ...]:
    """An empty conversation; in blind mode the tuned model's side is drawn again."""
    tuned_is_left = bool(blind_on and random.random() < 0.5)
    left_label, right_label = labels(blind_on, tuned_is_left, not blind_on, shown_names(run_id, checkpoint, against))
    return [], [], [], tuned_is_left, False, left_label, right_label, gr.update(visible=False), "", ""


def blind_switched(blind_on: bool, turns: list[dict[str, str]], run_id: str | None = None, checkpoint: Any = "",
                   against: Any = BASE) -> tuple[Any, ...]:
    """A new conversation for the new mode, saying why the old one went."""
    *cleared, _, reference = start_over(blind_on, run_id, checkpoint, against)
    other, run = shown_names(run_id, checkpoint, against)
    mode = ("Blind A/B on: the sides are shuffled and unnamed until you vote" if blind_on
            else f"Blind A/B off: {other} is on the left, {run} on the right")
    said = notice(f"{mode}; a new conversation starts (the {len(turns)} earlier "
                  f"message{'s' * (len(turns) != 1)} cleared).", "info") if turns else ""
    return (*cleared, said, reference)


def vote(manager: Any, choice: str, turns: list[dict[str, str]], run_id: str | None, checkpoint: Any,
         against: Any, tuned_is_left: bool) -> tuple[Any, ...]:
    """Save a blind vote on the last answers of the pair picked (the run, and the model `against` it) and
    reveal the names: (left name, right name, vote row, result, names revealed)."""
    if not run_id or not turns:
        raise gr.Error("Send a message and read both answers before voting.")
    tuned_side_name = "left" if tuned_is_left else "right"
    winner = {"tie": "tie", "both_bad": "both_bad"}.get(choice) or ("tuned" if choice == tuned_side_name else "base")
    last = turns[-1]
    step = checkpoint_step(checkpoint)
    try:
        other = against_ref(against)
        names = side_names(run_id, checkpoint, other)
        save_vote(manager.models_dir, run_id, last["message"], last["input"], winner, tuned_side_name, step,
                  answers={"base": last["base"], "tuned": last["tuned"]}, turn=len(turns), against=other)
    except PlaygroundError as exc:
        raise gr.Error(str(exc)) from None
    left_label, right_label = labels(True, tuned_is_left, True, names)
    left, right = names[::-1] if tuned_is_left else names
    said = winner.replace("_", " ") if names == DEFAULT_NAMES else \
        {"tuned": f"{names[1]} better", "base": f"{names[0]} better"}.get(winner, winner.replace("_", " "))
    result = (notice(f"Vote saved: {said}.", "ok")
              + f"<div>Left was <b>{html.escape(left)}</b>, right was <b>{html.escape(right)}</b>.</div>")
    return (left_label, right_label, gr.update(visible=False),
            result + tally_html(tally(manager.models_dir, run_id, step, other), names), True)


SAVED = "chat"   # the conversation, under this key of the browser's stored settings
KEPT_TURNS = 50  # the latest turns a reload brings back: the browser's storage is small
TURN_KEYS = ("message", "input", "base", "tuned")


def kept_chat(saved: dict[str, Any] | None, turns: list[dict[str, str]], run_id: str | None, checkpoint: Any,
              blind_on: bool, tuned_is_left: bool, revealed: bool, against: Any = BASE) -> dict[str, Any]:
    """The browser's stored settings with this conversation in them."""
    return {**(saved or {}), SAVED: {"turns": (turns or [])[-KEPT_TURNS:], "run": run_id, "checkpoint": checkpoint,
                                     "blind": bool(blind_on), "tuned_left": bool(tuned_is_left),
                                     "revealed": bool(revealed), "against": against or BASE}}


def stored_turns(value: Any) -> list[dict[str, str]]:
    """The turns the browser kept, those of the expected shape (the storage may hold an older one)."""
    return [{key: turn[key] for key in TURN_KEYS} for turn in value or [] if isinstance(turn, dict)
            and all(isinstance(turn.get(key), str) for key in TURN_KEYS)] if isinstance(value, list) else []


def restored_chat(manager: Any, saved: dict[str, Any] | None) -> tuple[Any, ...]:
    """The page opening: the run, the model compared with and the conversation this browser had, when
    both are still listed. (run, weights, blind, tuned side, names revealed, turns, left pane, right pane,
    left name, right name, vote row, compare with)."""
    chat = (saved or {}).get(SAVED) or {}
    runs_update = run_update(manager, chat.get("run"))
    run_id = runs_update.get("value")
    same_run = bool(run_id) and run_id == chat.get("run")
    kept_against = chat.get("against") or BASE
    against = against_update(manager, run_id, kept_against if same_run else BASE)
    weights = checkpoint_update(manager, run_id, chat.get("checkpoint", "") if same_run else "")
    turns = stored_turns(chat.get("turns")) if same_run and against["value"] == kept_against else []
    blind_on = bool(chat.get("blind"))
    tuned_is_left = bool(blind_on and chat.get("tuned_left"))
    revealed = bool(turns and chat.get("revealed"))
    left, right = panes(turns, tuned_is_left)
    left_name, right_name = labels(blind_on, tuned_is_left, revealed,
                                   shown_names(run_id, weights["value"], against["value"]))
    return (runs_update, weights, blind_on, tuned_is_left, revealed, turns, left, right, left_name, right_name,
            gr.update(visible=bool(blind_on and turns and not revealed)), against)


def pick_example(manager: Any, index: Any, run_id: str | None) -> tuple[str, str, str]:
    """(message, input, reference block) for one test record of the run."""
    if index is None or not run_id:
        raise gr.Error("Pick an example first.")
    record = manager.run_data(run_id).dataset.records[int(index)]
    filled = "the message and its Input section are" if record.input else "the message is"
    shown_reference = (f"Test record #{index}: {filled} filled in below; Send asks both models."
                       + (f"<div><b>Input</b></div><div class='pg-text' id='chat-example-input'>"
                          f"{html.escape(record.input)}</div>" if record.input else "")
                       + f"<div><b>Reference answer</b></div><div class='pg-text'>{html.escape(record.output)}</div>")
    return record.instruction, record.input, shown_reference


def layout(manager: Any) -> SimpleNamespace:
    """The tab's components: the run and modes, generation settings, the two panes, votes, the message box."""
    ui = SimpleNamespace()
    gr.Markdown("Both sides answer the same message with the same settings, in the run's own prompt style. "
                "Base is the shared weights with every adapter off; Tuned switches the run's adapter on. "
                "\"Compare with\" puts another run or checkpoint on the same base model in Base's place.")
    with gr.Row(equal_height=True):
        ui.run = gr.Dropdown(run_choices(manager), value=None, label="Tuned run", scale=3, min_width=300,
                             elem_id="chat-run")
        ui.checkpoint = gr.Dropdown([("final weights", "")], value="", label="Weights", scale=1, min_width=190,
                                    elem_id="chat-checkpoint")
        ui.against = gr.Dropdown([("base model", BASE)], value=BASE, label="Compare with", scale=3, min_width=300,
                                 elem_id="chat-against")
        ui.refresh = gr.Button("↻ Runs", scale=0, elem_id="chat-refresh")
        ui.raw = gr.Checkbox(label="Raw (no prompt template)", scale=1, elem_id="chat-raw")
        ui.blind = gr.Checkbox(label="Blind A/B (shuffled, unnamed)", scale=1, elem_id="chat-blind")
    ui.run_info = gr.HTML(elem_id="chat-run-info")
    with gr.Accordion("Generation settings (same for both sides)", open=False, elem_id="chat-settings"):
        with gr.Row():  # three to a row: room for each label beside its number box
            max_new = gr.Slider(1, 512, value=64, step=1, label="Max new tokens", min_width=280, elem_id="chat-max-new")
            temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0: greedy)", min_width=280)
            seed = gr.Number(value=123, precision=0, label="Seed", min_width=280)
        with gr.Row():
            top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p", min_width=280)
            top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k (0: off)", min_width=280)
            penalty = gr.Slider(0.5, 2, value=1, step=0.05, label="Repetition penalty", min_width=280)
    ui.generation = [max_new, temperature, top_p, top_k, penalty, seed]
    with gr.Row():
        # The names sit above the panes, not on them (a pane's own label covers its first lines).
        # Answers are shown as the model wrote them: "### Response:" is text, not a Markdown heading.
        with gr.Column():
            ui.left_name = gr.HTML(pane_name("Base"), elem_id="chat-left-name")
            ui.left = gr.Chatbot(show_label=False, height=380, buttons=["copy", "copy_all"], render_markdown=False,
                                 elem_id="chat-left")
        with gr.Column():
            ui.right_name = gr.HTML(pane_name("Tuned"), elem_id="chat-right-name")
            ui.right = gr.Chatbot(show_label=False, height=380, buttons=["copy", "copy_all"], render_markdown=False,
                                  elem_id="chat-right")
    ui.reference = gr.HTML(elem_id="chat-reference")
    with gr.Row(visible=False) as ui.vote_row:
        ui.vote_buttons = {key: gr.Button(label, size="sm", elem_id=f"vote-{key}") for key, label in VOTES.items()}
    ui.votes = gr.HTML(elem_id="chat-votes")
    ui.error = gr.HTML(elem_id="chat-error")
    with gr.Row(equal_height=True):
        with gr.Column(scale=4):
            ui.message = gr.Textbox(label="Message", placeholder="Type an instruction…", lines=2, elem_id="chat-message")
            ui.input = gr.Textbox(label="Input (optional: the record's ### Input section)", lines=2, max_lines=8,
                                  elem_id="chat-input")
        with gr.Column(scale=1, min_width=150):
            ui.send = gr.Button("Send", variant="primary", elem_id="chat-send")
            ui.stop = gr.Button("Stop", variant="stop", elem_id="chat-stop")
    with gr.Row():
        ui.regenerate = gr.Button("Regenerate", size="sm", elem_id="chat-regenerate")
        ui.clear = gr.Button("Clear", size="sm", elem_id="chat-clear")
    with gr.Row(equal_height=True):
        ui.example = gr.Dropdown([], label="Example instructions from the run's test split", scale=4,
                                 elem_id="chat-example")
        ui.use_example = gr.Button("Use example", scale=1, elem_id="chat-use-example")
    ui.turns = gr.State([])          # the conversation, as text (see the module docstring)
    ui.tuned_left = gr.State(False)  # blind mode: which side the tuned model is shown on
    ui.answering = gr.State(False)   # both answers stream: Send waits
    ui.revealed = gr.State(False)    # blind mode: a vote showed which side is which
    return ui


def build(shared: Shared, tab: gr.Tab) -> None:
    manager = shared.manager
    ui = layout(manager)

    stops = SessionStops()
    kept = [shared.browser, ui.turns, ui.run, ui.checkpoint, ui.blind, ui.tuned_left, ui.revealed, ui.against]
    pair = [ui.run, ui.checkpoint, ui.against]  # the two models that answer

    def keep(event: Any) -> None:
        """After `event`, the browser keeps the conversation as it stands."""
        event.then(kept_chat, kept, shared.browser, show_progress="hidden")

    def answer(event: gr.EventData, request: gr.Request, *args):
        regenerating = getattr(event.target, "elem_id", None) == "chat-regenerate"
        yield from respond(manager, ui, lambda: stops.fresh(request), regenerating, *args)

    def stop(request: gr.Request):
        stops.stop(request)  # the answers end at their next token
        return buttons(ui, False)

    # Send, Shift+Enter and Regenerate are one event; "multiple": a message sent while one streams is
    # refused by respond() with a notice (the browser would otherwise drop it without a word)
    keep(gr.on([ui.send.click, ui.message.submit, ui.regenerate.click], answer,
               [ui.answering, ui.message, ui.input, ui.turns, *pair, ui.raw, ui.blind, ui.tuned_left,
                *ui.generation],
               [ui.message, ui.input, ui.left, ui.right, ui.turns, ui.error, ui.send, ui.regenerate, ui.answering,
                ui.vote_row], trigger_mode="multiple"))
    ui.stop.click(stop, None, [ui.send, ui.regenerate, ui.answering])
    fresh = [ui.left, ui.right, ui.turns, ui.tuned_left, ui.revealed, ui.left_name, ui.right_name, ui.vote_row,
             ui.votes, ui.reference]
    keep(gr.on([ui.clear.click, ui.left.clear, ui.right.clear], start_over, [ui.blind, *pair], fresh))  # bins too
    keep(ui.blind.input(blind_switched, [ui.blind, ui.turns, *pair], fresh))  # the user's switch, not a reload's
    for key, button in ui.vote_buttons.items():
        keep(button.click(lambda c, r, w, a, t, key=key: vote(manager, key, c, r, w, a, t),
                          [ui.turns, *pair, ui.tuned_left],
                          [ui.left_name, ui.right_name, ui.vote_row, ui.votes, ui.revealed]))
    ui.use_example.click(lambda i, r: pick_example(manager, i, r), [ui.example, ui.run],
                         [ui.message, ui.input, ui.reference])

    def show_run(event: Any) -> Any:
        return event.then(lambda r, w, a: describe_run(manager, r, w, a), pair, [ui.run_info, ui.example])

    def choices(run_id: str | None, checkpoint: Any, against: Any) -> tuple[Any, Any]:
        """The run's weights and what it can be compared with, read again, the picks kept while listed."""
        return checkpoint_update(manager, run_id, checkpoint), against_update(manager, run_id, against)

    # a reload brings back the run and conversation this browser had
    show_run(shared.app.load(lambda saved: restored_chat(manager, saved), shared.browser,
                             [ui.run, ui.checkpoint, ui.blind, ui.tuned_left, ui.revealed, ui.turns, ui.left, ui.right,
                              ui.left_name, ui.right_name, ui.vote_row, ui.against]))
    # runs appear as they are trained: the lists are read again when the tab is shown
    show_run(gr.on([tab.select, ui.refresh.click], lambda current: run_update(manager, current), ui.run, ui.run).then(
        choices, pair, [ui.checkpoint, ui.against]))
    relabel_runs(manager, ui.run)
    picked = ui.run.input(lambda r, a: choices(r, "", a), [ui.run, ui.against], [ui.checkpoint, ui.against])
    described = [show_run(picked)] + [dropdown.input(lambda r, w, a: describe_run(manager, r, w, a), pair,
                                                     [ui.run_info, ui.example]) for dropdown in (ui.checkpoint, ui.against)]
    # the user picked another pair: the panes' names follow, and a vote waits for the pair's answers
    for event in described:
        keep(event.then(names_update, [ui.blind, ui.tuned_left, ui.revealed, *pair],
                        [ui.left_name, ui.right_name, ui.vote_row], show_progress="hidden"))
