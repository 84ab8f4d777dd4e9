"""DPO: the book's loss and rewards, runs from a supervised run, preference pairs from votes and pairwise
verdicts, preference files and their checks, one copy of the base weights, and the command line."""

import json
import shutil
import threading

import pytest
import torch
import torch.nn.functional as F

from playground import checkpoints, data, data_checks, dpo, evaluation, preference, runs, store
from playground.errors import DataError, PlaygroundError
from playground.judge.runner import PairJudgment
from playground.modeling import RowLogProbs
from playground.training import TrainConfig, prepare_model, run_training
from playground.votes import save_vote
from playground.weights import Weights
from tests_helpers import run_cli

WORDS = ["apple", "river", "stone", "cloud", "green", "piano", "tiger", "lemon", "ocean", "maple", "candle", "rocket",
         "water", "house", "light", "table", "music", "bread", "paper", "horse", "train", "glass", "money", "night",
         "sugar", "plant", "chair", "phone", "beach", "smile", "dream", "snow", "wind", "fire", "gold", "milk",
         "rain", "tree", "bird", "fish"]


def pairs_dataset() -> data.Dataset:
    """'Repeat the word X.': chosen "X X", rejected a refusal."""
    records = [data.Record(f"Repeat the word {w}.", "", f"{w} {w}", chosen=f"{w} {w}", rejected="I do not know.")
               for w in WORDS]
    return data.Dataset(records=records, source="pairs", mapping={})


@pytest.fixture
def store_with_sft_run(tiny_run, tmp_path):
    """A models folder of this test's own holding a copy of the finished LoRA run 'tiny-run'."""
    shutil.copytree(tiny_run / "runs" / "tiny-run", tmp_path / "runs" / "tiny-run",
                    ignore=shutil.ignore_patterns("votes.jsonl"))  # votes other modules left there
    return tmp_path


def dpo_settings(model_dir, **changes) -> TrainConfig:
    values = dict(model=str(model_dir), objective="dpo", from_run="tiny-run", beta=0.1, max_steps=12, batch_size=4,
                  lr=1e-2, warmup_steps=1, mask="prompt", lora_r=8, lora_alpha=16, lora_dropout=0.0, eval_every=4,
                  eval_batches=2, probes=0, probe_every=0)
    return TrainConfig(**{**values, **changes})


def run_dpo(models, model_dir, run_id, config, dataset=None, stop_at=None, resume=None):
    stop = threading.Event()

    def on_event(event):
        if stop_at is not None and event.kind == "step" and event.step >= stop_at:
            stop.set()

    side = prepare_model(Weights(store.load_model(str(model_dir))), config, run_id, models, None, "cpu", resume)
    state, message, result = run_training(side, store.load_tokenizer(str(model_dir)), dataset or pairs_dataset(),
                                          config, models, run_id, on_event=on_event, stop=stop, resume=resume)
    return state, message, result, side


# ---------------------------------------------------------------- the book's formulas


def book_compute_logprobs(logits, labels, selection_mask):
    """ch07/04_preference-tuning-with-dpo: compute_logprobs, with a selection mask."""
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1, :]
    log_probs = F.log_softmax(logits, dim=-1)
    selected = torch.gather(input=log_probs, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    mask = selection_mask[:, 1:].clone()
    selected = selected * mask
    return selected.sum(-1) / mask.sum(-1)


def book_compute_dpo_loss(model_chosen, model_rejected, reference_chosen, reference_rejected, beta=0.1):
    """ch07/04_preference-tuning-with-dpo: compute_dpo_loss."""
    model_logratios = model_chosen - model_rejected
    reference_logratios = reference_chosen - reference_rejected
    logits = model_logratios - reference_logratios
    losses = -F.logsigmoid(beta * logits)
    chosen_rewards = (model_chosen - reference_chosen).detach()
    rejected_rewards = (model_rejected - reference_rejected).detach()
    return losses.mean(), chosen_rewards.mean(), rejected_rewards.mean()


def book_batch(samples, pad_id):
    """The book's collate for our samples: each full sequence padded, its mask true on the response
    tokens (the prompt and the padding masked), as `collate(..., mask="prompt")` scores them."""
    width = max(len(s.ids) for s in samples)
    sequences = torch.full((len(samples), width), pad_id)
    mask = torch.zeros((len(samples), width), dtype=torch.bool)
    for row, sample in enumerate(samples):
        sequences[row, :len(sample.ids)] = torch.tensor(sample.ids)
        mask[row, sample.prompt_len:len(sample.ids)] = True
    return sequences, mask


def book_logprobs(model, samples, pad_id):
    sequences, mask = book_batch(samples, pad_id)
    with torch.no_grad():
        return book_compute_logprobs(model(sequences).logits, sequences, mask)


def test_loss_rewards_and_margins_equal_the_books(tiny_model_dir):
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    reference = store.load_model(str(tiny_model_dir)).eval()
    policy = store.load_model(str(tiny_model_dir)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the policy a few steps away from the reference
        for parameter in policy.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    dataset = pairs_dataset()
    config = TrainConfig(model=str(tiny_model_dir), objective="dpo", beta=0.3, mask="prompt", max_length=None)
    objective = dpo.Preference(config, tokenizer)
    pairs = objective.encode(dataset.records, [0, 5, 9, 17])
    assert [len(p.chosen.ids) for p in pairs] != [len(p.rejected.ids) for p in pairs]  # padding is exercised
    pad = objective.pad_id
    with torch.no_grad():
        reference_logprobs = dpo.mean_logprobs(RowLogProbs(reference), objective.collate(pairs), "cpu")
        objective.reference = {p.index: (float(reference_logprobs[n]), float(reference_logprobs[n + len(pairs)]))
                               for n, p in enumerate(pairs)}
        (losses, chosen, rejected), _ = objective.losses(RowLogProbs(policy), pairs, "cpu")
    figures = dpo.summary(losses, chosen, rejected)

    book = [book_logprobs(model, [getattr(p, side) for p in pairs], pad)
            for model in (policy, reference) for side in ("chosen", "rejected")]
    loss, chosen_reward, rejected_reward = book_compute_dpo_loss(*book, beta=0.3)
    assert abs(float(losses.mean()) - float(loss)) < 1e-6
    assert abs(figures["chosen_reward"] - float(chosen_reward)) < 1e-6
    assert abs(figures["rejected_reward"] - float(rejected_reward)) < 1e-6
    assert abs(figures["reward_margin"] - float(chosen_reward - rejected_reward)) < 1e-6
    book_chosen, book_rejected = book[0] - book[2], book[1] - book[3]  # each pair's rewards
    assert torch.allclose(chosen, book_chosen, atol=1e-6) and torch.allclose(rejected, book_rejected, atol=1e-6)
    assert figures["reward_accuracy"] == float((book_chosen > book_rejected).float().mean())
    assert 0 < figures["reward_accuracy"] < 1 and abs(float(loss) - 0.6931) > 1e-3  # a fixed batch that says something


def test_a_pair_batch_holds_the_chosen_rows_then_the_rejected_ones_with_their_masks(tiny_model_dir):
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    pairs = dpo.encode_pairs(pairs_dataset().records, "alpaca", tokenizer, indices=[3, 4])
    batch = dpo.collate_pairs(pairs, tokenizer.eos_token_id, mask="prompt")
    assert [s.index for s in batch.samples] == [3, 4, 3, 4]
    assert batch.samples[0].ids[:pairs[0].chosen.prompt_len] == batch.samples[2].ids[:pairs[0].chosen.prompt_len]
    trained = [tokenizer.decode([t for t in row if t != -100]) for row in batch.targets.tolist()]
    assert trained == ["cloud cloud<|endoftext|>", "green green<|endoftext|>", "I do not know.<|endoftext|>",
                       "I do not know.<|endoftext|>"]


# ---------------------------------------------------------------- runs


def test_a_dpo_run_from_a_supervised_run_raises_the_validation_reward_margin(tiny_model_dir, store_with_sft_run):
    models = store_with_sft_run
    state, message, result, _ = run_dpo(models, tiny_model_dir, "dpo-run", dpo_settings(tiny_model_dir))
    assert state == "finished", message
    rows = runs.read(models, "dpo-run").metrics()
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4, 8, 12]
    # the policy starts as the reference: the first margin is exactly 0 and the loss log 2
    assert evals[0]["val_reward_margin"] == 0 and abs(evals[0]["val_loss"] - 0.693147) < 1e-6
    margins = [r["val_reward_margin"] for r in evals]
    assert margins[-1] > margins[1] > 0 and evals[-1]["val_reward_accuracy"] == 1.0
    assert evals[-1]["val_loss"] < 0.69
    steps = [r for r in rows if r["kind"] == "step"]
    assert {"train_loss", "chosen_reward", "rejected_reward", "reward_margin", "reward_accuracy"} <= set(steps[0])
    assert result["val_reward_margin"] == margins[-1]
    saved = runs.read(models, "dpo-run")
    settings = saved.config_json["settings"]
    assert (settings["objective"], settings["beta"], settings["from_run"]) == ("dpo", 0.1, "tiny-run")
    start = saved.config_json["from_run"]
    assert start["run"] == "tiny-run" and start["weights"] == "adapter" and len(start["sha256"]) == 64
    assert saved.data()["sha256"] == pairs_dataset().fingerprint and saved.weights.is_adapter


def test_a_dpo_run_stopped_and_resumed_matches_the_unbroken_run(tiny_model_dir, store_with_sft_run):
    models = store_with_sft_run
    config = dpo_settings(tiny_model_dir, max_steps=8, checkpoint_every=3)
    state, message, _, _ = run_dpo(models, tiny_model_dir, "whole", config)
    assert state == "finished", message
    state, message, _, _ = run_dpo(models, tiny_model_dir, "broken", config, stop_at=5)
    assert state == "stopped", message
    latest = checkpoints.latest(models / "runs" / "broken")
    assert latest.step == 5 and latest.state()["objective"]["reference"].shape[1] == 2
    state, message, _, _ = run_dpo(models, tiny_model_dir, "broken", config, resume=latest)
    assert state == "finished", message

    def curve(run_id, kind, key):
        return [(r["step"], r[key]) for r in runs.read(models, run_id).metrics() if r["kind"] == kind]

    for key in ("train_loss", "reward_margin", "reward_accuracy"):
        assert curve("broken", "step", key) == curve("whole", "step", key)
    assert set(curve("whole", "eval", "val_reward_margin")) <= set(curve("broken", "eval", "val_reward_margin"))


def test_a_lora_dpo_run_holds_one_copy_of_the_base_weights(tiny_model_dir, store_with_sft_run):
    models = store_with_sft_run
    base = store.load_model(str(tiny_model_dir))
    base_count = sum(p.numel() for p in base.parameters())
    adapter = sum(t.numel() for t in runs_adapter(models, "tiny-run").values())
    config = dpo_settings(tiny_model_dir, max_steps=2, eval_every=0)
    side = prepare_model(Weights(base), config, "dpo-run", models, None, "cpu")
    model = side.weights.model
    assert list(model.peft_config) == ["dpo-run"]  # the policy only: no reference adapter, no second model
    assert sum(p.numel() for p in model.parameters()) == base_count + adapter
    # the policy starts from the supervised run's adapter
    started = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    saved = runs_adapter(models, "tiny-run")
    assert len(started) == len(saved) and all(torch.equal(started[k.replace(".weight", ".dpo-run.weight")], v)
                                              for k, v in saved.items())
    state, message, _ = run_training(side, store.load_tokenizer(str(tiny_model_dir)), pairs_dataset(), config, models,
                                     "dpo-run")
    assert state == "finished", message
    assert sum(p.numel() for p in model.parameters()) == base_count + adapter


def runs_adapter(models, run_id):
    from safetensors.torch import load_file

    return load_file(str(models / "runs" / run_id / "adapter" / "adapter_model.safetensors"))


def test_a_dpo_run_takes_the_settings_of_the_run_it_starts_from(tiny_model_dir, store_with_sft_run):
    models = store_with_sft_run
    config = dpo.settings_from_run(TrainConfig(objective="dpo", from_run="tiny-run", lora_r=32), models)
    assert (config.model, config.method, config.lora_r, config.lora_alpha) == (str(tiny_model_dir), "lora", 8, 16)
    with pytest.raises(PlaygroundError, match=r"takes its settings: lora_r 32 \(its 8\)"):
        dpo.starting_weights(models, TrainConfig(model=str(tiny_model_dir), objective="dpo", from_run="tiny-run",
                                                 lora_r=32, lora_alpha=16))
    with pytest.raises(PlaygroundError, match="a run to start from is for DPO only"):
        TrainConfig(from_run="tiny-run").check()
    with pytest.raises(PlaygroundError, match="beta must be a positive number"):
        TrainConfig(objective="dpo", beta=0).check()
    state, message, _, _ = run_dpo(models, tiny_model_dir, "no-pairs", dpo_settings(tiny_model_dir),
                                   dataset=data.Dataset([data.Record("Say hi.", "", "hi")] * 8, "plain", {}))
    assert state == "failed" and "this dataset has no 'chosen' and 'rejected' responses" in message


# ---------------------------------------------------------------- preference data


def test_preference_pairs_from_votes_keep_their_provenance(store_with_sft_run, tmp_path):
    models = store_with_sft_run
    answers = {"base": "apple", "tuned": "apple apple"}
    save_vote(models, "tiny-run", "Repeat the word apple.", "", "tuned", "left", answers=answers, turn=1)
    save_vote(models, "tiny-run", "Repeat the word river.", "", "base", "right", checkpoint=20,
              answers={"base": "river river", "tuned": "river"}, turn=1)
    save_vote(models, "tiny-run", "Repeat the word apple.", "", "tuned", "right", answers=answers, turn=1)  # again
    save_vote(models, "tiny-run", "Say hi.", "", "tie", "left", answers={"base": "hi", "tuned": "hello"}, turn=1)
    save_vote(models, "tiny-run", "Say bye.", "", "both_bad", "left", answers={"base": "x", "tuned": "y"}, turn=1)
    save_vote(models, "tiny-run", "Say more.", "", "tuned", "left")  # saved before votes kept the answers
    save_vote(models, "tiny-run", "And again.", "", "tuned", "left", answers=answers, turn=2)
    found = preference.combined(preference.pairs_from_votes(models, "tiny-run"))
    assert [(p.instruction, p.chosen, p.rejected) for p in found.pairs] == [
        ("Repeat the word apple.", "apple apple", "apple"), ("Repeat the word river.", "river river", "river")]
    assert found.pairs[1].provenance == {"source": "vote", "run": "tiny-run", "vote": 2,
                                         "time": found.pairs[1].provenance["time"], "winner": "base", "checkpoint": 20,
                                         "against": "base"}
    assert found.left_out == {"tie votes": 1, "both bad votes": 1, "votes saved without the answers": 1,
                              "votes on a later message of a conversation": 1, "repeats of a pair": 1}

    path = preference.write_pairs(tmp_path / "from-votes.json", found.pairs)
    loaded = data.load(path)
    assert loaded.is_preference and [(r.chosen, r.rejected) for r in loaded.records] == [
        ("apple apple", "apple"), ("river river", "river")]
    assert json.loads(path.read_text())[0]["provenance"]["vote"] == 1
    with pytest.raises(PlaygroundError, match="exists: preference pairs go to a new file"):
        preference.write_pairs(path, found.pairs)


def test_preference_pairs_from_pairwise_verdicts_where_both_orders_agree(store_with_sft_run):
    models = store_with_sft_run
    records = [{"instruction": f"Repeat the word {w}.", "input": "", "output": f"{w} {w}", "index": n,
                "base_response": w, "tuned_response": f"{w} {w}"} for n, w in enumerate(WORDS[:5])]
    orders = [("tuned", "tuned"), ("base", "base"), ("tuned", "base"), ("tie", "tie"), (None, "tuned")]
    verdicts = [PairJudgment(str(n), first, second, ("scored", "scored"), ("A", "B"))
                for n, (first, second) in enumerate(orders, start=1)]
    rows = evaluation.example_rows(records, [], verdicts, "task", use_judge=True)
    folder = models / "runs" / "tiny-run" / "judge" / "test-5-0123abcd"
    folder.mkdir(parents=True)
    runs.write_json(folder / "scores-llama3-ffff0000.json", {"judge": {"model": "llama3"}, "summary": {}, "rows": rows})
    scores = "judge/test-5-0123abcd/scores-llama3-ffff0000.json"
    assert preference.gradings_with_verdicts(models, "tiny-run") == [scores]
    found = preference.combined(preference.pairs_from_grading(models, "tiny-run"))
    assert [(p.chosen, p.rejected) for p in found.pairs] == [("apple apple", "apple"), ("river", "river river")]
    assert found.pairs[1].provenance == {"source": "pairwise", "run": "tiny-run", "grading": "test-5-0123abcd",
                                         "scores": "scores-llama3-ffff0000.json", "against": "base", "judge": "llama3",
                                         "example": 2, "record": 1, "verdict": "base", "preferred": "base",
                                         "replies": ["A", "B"]}
    assert found.pairs[0].provenance["preferred"] == "tiny-run"
    assert found.pairs[0].row()["output"] == "apple apple"  # the record's reference
    assert found.left_out == {"ties or orders that disagree": 2, "examples without a verdict": 1}


def test_preference_files_are_read_and_checked(write, default_tokenizer):
    book = write("book.json", [{"instruction": "Add 2 and 3.", "input": "", "output": "5", "chosen": "It is 5.",
                                "rejected": "5, obviously."},
                               {"instruction": "Name a colour.", "input": "", "output": "Blue.", "chosen": "Blue.",
                                "rejected": "blue"}])
    loaded = data.load(book)
    assert loaded.is_preference and loaded.records[0].output == "5" and loaded.records[0].chosen == "It is 5."
    plain = write("plain.jsonl", "\n".join(json.dumps({"prompt": f"Say {w}.", "chosen": w, "rejected": w.upper() + "!"})
                                          for w in WORDS[:20]))
    pairs = data.load(plain)
    assert pairs.mapping["instruction"] == "prompt" and pairs.records[3].output == pairs.records[3].chosen == "cloud"
    assert data.load("builtin").is_preference is False
    with pytest.raises(DataError, match="needs both 'chosen' and 'rejected'"):
        data.load(write("half.json", [{"prompt": "Say hi.", "chosen": "hi"}]))
    with pytest.raises(DataError, match="record 1, field 'rejected': is empty"):
        data.load(write("empty.json", [{"prompt": "Say hi.", "chosen": "hi", "rejected": " "}]))

    records = [data.Record("Say hi.", "", "hi", chosen="hi", rejected="Hi!"),      # the same, up to case
               data.Record("Say bye.", "", "bye", chosen="bye", rejected=""),       # an empty side
               data.Record("say hi", "", "hello", chosen="hello", rejected="no"),   # the first's prompt again
               data.Record("Say yes.", "", "yes", chosen="yes", rejected="no")]
    splits = data.Splits(train=[0, 1], validation=[2], test=[3])
    found = {f.key: f for f in data_checks.pair_findings(records, splits)}
    assert found["same_sides"].records == [0] and found["empty_rejected"].records == [1]
    assert found["empty_chosen"].records == []
    assert found["shared_prompts"].records == [0, 2] and found["shared_prompts"].notes[2] == "validation; train has #0"
    report = data_checks.check(data.Dataset(records, "checked", {}), default_tokenizer)
    assert {"same_sides", "empty_rejected", "shared_prompts"} <= {f.key for f in report.problems()}


def test_the_data_commands_read_preference_files_and_write_pairs(write, store_with_sft_run, tmp_path):
    path = write("pairs.json", [{"instruction": "Add 2 and 3.", "input": "", "output": "5", "chosen": "5",
                                 "rejected": "5"}] + [{"instruction": f"Say {w}.", "input": "", "output": w,
                                                       "chosen": w, "rejected": "no"} for w in WORDS])
    result = run_cli("data", "validate", str(path))
    assert result.returncode == 0, result.stderr
    assert f"{path}: 41 preference pairs (chosen and rejected), 0 with an input" in result.stdout
    assert "warning: 1 chosen equals rejected (records 0)" in result.stdout
    save_vote(store_with_sft_run, "tiny-run", "Say hi.", "", "tuned", "left", answers={"base": "x", "tuned": "hi"},
              turn=1)
    out = tmp_path / "votes-pairs.json"
    result = run_cli("data", "pairs", "--from-votes", "tiny-run", "--out", str(out), models_dir=store_with_sft_run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"1 preference pairs written to {out}"
    result = run_cli("data", "pairs", "--from-votes", "tiny-run", "--out", str(out), models_dir=store_with_sft_run)
    assert result.returncode == 2 and "exists" in result.stderr


def test_the_command_line_trains_dpo_and_prints_its_figures(tiny_model_dir, store_with_sft_run, write):
    path = write("pairs.json", [r.as_dict() for r in pairs_dataset().records])
    result = run_cli("train", "--method", "dpo", "--data", str(path), "--from-run", "tiny-run", "--beta", "0.2",
                     "--max-steps", "4", "--batch-size", "4", "--lr", "0.01", "--eval-every", "2", "--probes", "0",
                     "--device", "cpu", models_dir=store_with_sft_run)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    steps = [line for line in lines if "train_loss" in line]
    evals = [line for line in lines if "val_loss" in line]
    assert [line["step"] for line in steps] == [1, 2, 3, 4] and [line["step"] for line in evals] == [0, 2, 4]
    assert {"reward_margin", "reward_accuracy"} <= set(steps[0])
    assert {"val_reward_margin", "val_reward_accuracy"} <= set(evals[0])
    run_id = result.stdout.splitlines()[-1].rsplit("/", 1)[-1]
    assert run_id.endswith("-dpo")
    config = runs.read(store_with_sft_run, run_id).config
    assert (config.beta, config.from_run, config.mask, config.lora_r) == (0.2, "tiny-run", "prompt", 8)
