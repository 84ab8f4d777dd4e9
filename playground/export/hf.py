"""The adapter folder, and the merged model as a Hugging Face folder with its model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .. import evaluation
from ..errors import PlaygroundError
from ..prompts import style_of
from .prompt_format import PromptFormat
from .tuned import RunFacts

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def write_adapter(facts: RunFacts, folder: Path) -> None:
    """The run's peft adapter (config and weights), for `PeftModel.from_pretrained(base, folder)`."""
    if not facts.is_lora:
        raise PlaygroundError(f"Run {facts.record.run_id} is a full fine-tune: it has no adapter. Export it as a "
                              "Hugging Face folder (hf) or GGUF instead.")
    source = facts.weights.folder
    for name in ADAPTER_FILES:
        if not (source / name).is_file():
            raise PlaygroundError(f"The adapter of {facts.ref.label} has no {name}.")
        shutil.copyfile(source / name, folder / name)


def write_hf(model: Any, tokenizer: Any, folder: Path, chat_template: str, stops: list[int]) -> None:
    """The merged model as safetensors, its tokenizer with the run's prompt style as the chat template,
    and a generation config that stops where the app stops and decodes greedily."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)  # the shared tokenizer is not changed: its template is replaced on disk
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.pop("chat_template", None) is not None:
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
    generation = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": stops if len(stops) > 1 else stops[0],
                  "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0],
                  "do_sample": False, "max_new_tokens": 256}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=1), encoding="utf-8")


def model_card(facts: RunFacts, models_dir: Path, found: PromptFormat, example: str, fmt: str,
               parity: dict[str, Any] | None = None) -> str:
    """README.md: what the model is, how it was trained, on what data, its scores and its prompt format."""
    record = facts.record
    data = record.data() or {}
    grading = evaluation.quoted_grading(models_dir, record.run_id)
    lines = [f"# {facts.name}", "",
             f"A {'LoRA' if facts.is_lora else 'full'} fine-tune of `{facts.spec}` made with the instruction-tuning "
             f"playground ({fmt} export)" + _checkpoint_text(facts) + ".", "", "## Training", "",
             "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {json.dumps(value)} |" for key, value in vars(record.config).items()]
    status = record.status
    lines += ["", f"State: {record.state}, {status.get('steps', '?')} steps; last train loss "
                  f"{_number(status.get('train_loss'))}, validation loss {_number(status.get('val_loss'))} "
                  f"(before training {_number(status.get('first_val_loss'))}).", "", "## Data", ""]
    if data:
        lines += [f"{data.get('source')} ({data.get('records', '?')} records, sha256 {str(data.get('sha256'))[:16]}…), "
                  f"split seed {data.get('split', {}).get('seed')}: train {len(data['indices']['train'])}, "
                  f"validation {len(data['indices']['validation'])}, test {len(data['indices']['test'])} records."]
    else:
        lines += [str(record.config_json.get("dataset", "unknown"))]
    lines += ["", "## Scores", ""]
    if grading:
        summary = evaluation.summary_lines(grading["summary"])
        lines += [f"Grading {grading['grading']}:", ""] + [f"- {line.strip()}" for line in summary]
    else:
        lines += ["Not graded (grade it in the Judge tab or with `python -m playground judge --run RUN`)."]
    if parity:
        lines += ["", f"GGUF parity with the app: {parity['summary']}."]
    lines += ["", "## Prompt format", "",
              f"Style `{facts.style}`, written by the chat template (a user message's optional `input` key is the "
              "Input section). One turn:", "", "```", example, "```", "",
              "Answers end at: " + ", ".join(f"`{t}`" for t in _stop_texts(found)) + "."]
    return "\n".join(lines) + "\n"


def _stop_texts(found: PromptFormat) -> list[str]:
    return ["the end-of-text token"] + (["the end-of-turn token"] if style_of(found.style).end_of_turn else [])


def _checkpoint_text(facts: RunFacts) -> str:
    """The model card's note on a checkpoint export: its step, and its answer scores when it was the best."""
    if facts.step is None:
        return ""
    text = f": the checkpoint at step {facts.step} of run {facts.record.run_id}"
    best = facts.record.status.get("best_checkpoint") or {}
    if best.get("step") == facts.step:
        scores = ", ".join(f"{label} {best[name]:.3f}" for name, label in (("exact_match", "exact match"),
                                                                         ("rouge_l", "ROUGE-L"))
                           if best.get(name) is not None)
        text += f", the one whose validation answers scored best while it trained ({scores})"
    return text


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "?"
