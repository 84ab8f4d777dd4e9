"""What a fine-tune changed, token by token, checked against separate forward passes of the base
model and of the base with the run's adapter loaded by peft itself."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from playground import batching, data, inspection, store
from playground.errors import PlaygroundError
from playground.manager import ModelManager

ROOT = Path(__file__).resolve().parent.parent
RUN = "seed-7"


@pytest.fixture(scope="module")
def manager(graded_run, tiny_model_dir):
    return ModelManager(graded_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")


def reference_logprobs(model, ids):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1)


def test_figures_match_separate_forward_passes_of_base_and_adapter(manager, graded_run, tiny_model_dir):
    from peft import PeftModel

    position = 2
    number, record = inspection.split_record(manager, RUN, "test", position)
    result = inspection.inspect_example(manager, RUN, "test", position)
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    sample = batching.encode(record, "alpaca", tokenizer)
    base_model = store.load_model(str(tiny_model_dir), dtype=torch.float32).eval()
    base_lp = reference_logprobs(base_model, sample.ids)
    tuned_model = PeftModel.from_pretrained(store.load_model(str(tiny_model_dir), dtype=torch.float32),
                                            str(graded_run / "runs" / RUN / "adapter")).eval()
    tuned_lp = reference_logprobs(tuned_model, sample.ids)

    assert result.source == f"test example {position} (record {number})" and not result.truncated
    response = sample.ids[sample.prompt_len:]
    assert [row.position for row in result.tokens] == list(range(sample.prompt_len, len(sample.ids)))
    assert [row.token for row in result.tokens] == batching.token_text(tokenizer, response)
    assert [row.part for row in result.tokens][-1] == "eos"
    assert len(result.prompt_tokens) == sample.prompt_len
    for row in result.tokens:
        p, target = row.position - 1, sample.ids[row.position]
        assert row.base_prob == pytest.approx(math.exp(base_lp[p, target]), abs=1e-5)
        assert row.tuned_prob == pytest.approx(math.exp(tuned_lp[p, target]), abs=1e-5)
        assert row.base_loss == pytest.approx(-float(base_lp[p, target]), abs=1e-4)
        kl = float((tuned_lp[p].exp() * (tuned_lp[p] - base_lp[p])).sum())
        assert row.kl == pytest.approx(kl, abs=1e-4) and row.kl >= 0
        top = torch.topk(tuned_lp[p], inspection.TOP_K)
        assert [t for t, _ in row.tuned_top] == batching.token_text(tokenizer, top.indices.tolist())
        assert [q for _, q in row.base_top] == sorted((q for _, q in row.base_top), reverse=True)
    tuned_response = [-float(tuned_lp[r.position - 1, sample.ids[r.position]]) for r in result.tokens]
    assert result.totals["tuned"]["response_loss"] == pytest.approx(sum(tuned_response) / len(tuned_response), abs=1e-4)
    prompt_losses = [-float(base_lp[p, sample.ids[p + 1]]) for p in range(sample.prompt_len - 1)]
    assert result.totals["base"]["prompt_loss"] == pytest.approx(sum(prompt_losses) / len(prompt_losses), abs=1e-4)


def test_a_model_against_itself_changes_nothing(manager, tiny_model_dir):
    base = manager.base_side(str(tiny_model_dir))
    record = data.Record("Name a colour.", "", "blue")
    result = inspection.compare(base, base, manager.tokenizer(str(tiny_model_dir)), record, "alpaca")
    assert result.tokens and all(row.kl == pytest.approx(0, abs=1e-6) for row in result.tokens)
    assert all(row.base_prob == row.tuned_prob for row in result.tokens)


def test_training_lowered_the_loss_on_what_it_trained_on(manager):
    changed = [inspection.inspect_example(manager, RUN, "train", k) for k in range(4)]
    base = sum(r.totals["base"]["response_loss"] for r in changed)
    tuned = sum(r.totals["tuned"]["response_loss"] for r in changed)
    assert tuned < base


def test_typed_text_is_cut_at_the_run_max_length_and_says_so(manager):
    long = data.Record("Repeat after me.", "", " ".join(["stone"] * 400))
    result = inspection.inspect_record(manager, RUN, long)
    assert result.truncated and result.source == "typed text"
    assert len(result.prompt_tokens) + len(result.tokens) == 256 + 1  # the run's max length, plus the first id
    assert result.tokens[-1].part == "response"  # the end-of-text token was cut away


def test_an_example_past_the_split_is_refused_by_name(manager):
    size = len(manager.run_data(RUN).splits.test)
    with pytest.raises(PlaygroundError, match=f"test split has {size} examples: there is no example {size}"):
        inspection.inspect_example(manager, RUN, "test", size)


def test_family_losses_are_token_weighted_means_of_the_per_token_losses(manager):
    families = inspection.family_losses(manager, RUN, "test", limit=6)
    found = manager.run_data(RUN)
    tasks = [found.dataset.records[i].task or inspection.NO_FAMILY for i in found.splits.test[:6]]
    assert sorted(f.family for f in families) == sorted(set(tasks))
    assert sum(f.records for f in families) == 6
    per_example = [inspection.inspect_example(manager, RUN, "test", k) for k in range(6)]
    for family in families:
        rows = [row for task, r in zip(tasks, per_example) if task == family.family for row in r.tokens]
        assert family.tokens == len(rows)
        assert family.base_loss == pytest.approx(sum(r.base_loss for r in rows) / len(rows), abs=1e-4)
        assert family.tuned_loss == pytest.approx(sum(r.tuned_loss for r in rows) / len(rows), abs=1e-4)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "playground", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def test_command_line_prints_one_json_row_per_response_token(graded_run, tiny_model_dir):
    result = cli("inspect", "--run", RUN, "--index", "1", "--json", "--models-dir", str(graded_run))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    same_dtype = ModelManager(graded_run, tokenizer_spec=str(tiny_model_dir))  # the command line's choice
    expected = inspection.inspect_example(same_dtype, RUN, "test", 1)
    assert [r["token"] for r in rows] == [t.token for t in expected.tokens]
    assert set(rows[0]) == {"position", "token", "base_prob", "tuned_prob", "base_loss", "tuned_loss", "kl"}
    assert [r["tuned_loss"] for r in rows] == pytest.approx([t.tuned_loss for t in expected.tokens], abs=1e-3)

    typed = cli("inspect", "--run", RUN, "--instruction", "Name a colour.", "--models-dir", str(graded_run))
    assert typed.returncode == 2 and "--instruction needs --reference" in typed.stderr
    families = cli("inspect", "--run", RUN, "--families", "--limit", "3", "--models-dir", str(graded_run))
    assert families.returncode == 0 and families.stdout.startswith("task family"), families.stderr[-2000:]
