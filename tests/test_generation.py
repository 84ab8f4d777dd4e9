"""The one generation engine, on a tiny model and a tiny LoRA run: batch invariance, sides, state."""

import threading

import pytest
import torch

from playground import data, prompts, store
from playground.generation import GenerationSettings, Side, generate, stream
from playground.manager import ModelManager
from playground.training import TrainConfig
from tests_helpers import small_dataset, wait_until


@pytest.fixture
def manager(tiny_run, tiny_model_dir):
    return ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir))


def sides(manager, tiny_model_dir):
    tuned, _ = manager.tuned_side("tiny-run")
    return manager.base_side(str(tiny_model_dir)), tuned


def test_streaming_yields_growing_text(manager, tiny_model_dir):
    base, tuned = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    prompt = prompts.conversation([], "Repeat the word apple.", "alpaca", tokenizer)
    snapshots = list(stream([(base, prompt), (tuned, prompt)], tokenizer, "alpaca",
                            GenerationSettings(max_new_tokens=12)))
    assert len(snapshots) >= 2
    for side in (0, 1):
        texts = [s[side] for s in snapshots]
        assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert snapshots[-1][0] and snapshots[-1][1]
    assert snapshots[-1][0] != snapshots[-1][1]  # the adapter changes the answer


def test_greedy_answer_matches_transformers_generate(manager, tiny_model_dir):
    base, _ = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    prompt = prompts.conversation([], "Repeat the word river.", "alpaca", tokenizer)
    ids = tokenizer(prompt.text, return_tensors="pt").input_ids
    with base.weights.use() as model, model.disable_adapter(), torch.no_grad():
        expected = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                  min_new_tokens=10, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    expected_text = tokenizer.decode(expected[0, ids.shape[1]:], skip_special_tokens=True)
    answer = generate([(base, prompt)], tokenizer, "alpaca", GenerationSettings(max_new_tokens=10,
                                                                                min_new_tokens=10))[0]
    assert answer == expected_text.strip()


def float32_sides(tiny_run, tiny_model_dir):
    manager = ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    tuned, _ = manager.tuned_side("tiny-run")
    return manager, manager.base_side(str(tiny_model_dir)), tuned


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_an_answer_does_not_depend_on_its_batch(tiny_run, tiny_model_dir, temperature):
    """In float32, 32 prompts of different lengths, base and tuned: alone, in batches of 8 and of 32,
    every answer is the same text."""
    manager, base, tuned = float32_sides(tiny_run, tiny_model_dir)
    tokenizer = manager.tokenizer()
    records = data.load("builtin").records[:16]
    rendered = [prompts.render(r, "alpaca", tokenizer).inference for r in records]
    rows = [(side, prompt) for prompt in rendered for side in (base, tuned)]
    assert len({len(tokenizer(p.text).input_ids) for p in rendered}) > 8  # real left padding
    settings = GenerationSettings(max_new_tokens=24, temperature=temperature, top_p=0.9, seed=5)
    alone = generate(rows, tokenizer, "alpaca", settings, batch_size=1)
    assert generate(rows, tokenizer, "alpaca", settings, batch_size=8) == alone
    assert generate(rows, tokenizer, "alpaca", settings, batch_size=32) == alone
    assert generate(rows[::-1], tokenizer, "alpaca", settings, batch_size=32) == alone[::-1]
    assert len(set(alone)) > 4 and all(alone)  # the answers differ: the test compares something


def test_absolute_positions_are_counted_from_each_rows_first_real_token(tiny_model_dir):
    """GPT-2 adds learned absolute position embeddings, so a left-padded row is right only with
    per-row position ids: padding must not shift them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from playground.weights import Weights

    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256))
    side = Side("gpt2", Weights(model))
    rows = [(side, prompts.Prompt("word " * n)) for n in (3, 9, 17, 30)]
    settings = GenerationSettings(max_new_tokens=12)
    alone = generate(rows, tokenizer, "alpaca", settings, batch_size=1)
    assert generate(rows, tokenizer, "alpaca", settings, batch_size=4) == alone


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_adapter_off_equals_base(manager, tiny_model_dir, temperature):
    base, tuned = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    prompt = prompts.conversation([], "Repeat the word stone.", "alpaca", tokenizer)
    settings = GenerationSettings(max_new_tokens=16, temperature=temperature, top_p=0.9, seed=7)
    switched_off = Side("tuned, adapter off", tuned.weights, None)
    base_answer, off_answer, on_answer = generate([(base, prompt), (switched_off, prompt), (tuned, prompt)],
                                                  tokenizer, "alpaca", settings)
    assert off_answer == base_answer
    assert on_answer != base_answer


def test_the_base_side_ignores_every_injected_adapter(tiny_run, tiny_model_dir):
    """With a saved run's adapter loaded and a new run's adapter injected and active, base answers are
    those of a fresh copy of the base model that never saw an adapter."""
    manager, base, tuned = float32_sides(tiny_run, tiny_model_dir)
    job = manager.start_training(small_dataset(), TrainConfig(model=str(tiny_model_dir), max_steps=3, batch_size=2,
                                                              lr=5e-2, probes=0, eval_every=0, probe_every=0))
    job.thread.join(120)
    assert job.state == "finished", job.message
    assert base.weights.model.active_adapter == job.run_id and base.weights.has_adapter("tiny-run")
    tokenizer = manager.tokenizer()
    rows = [(base, prompts.render(r, "alpaca", tokenizer).inference) for r in small_dataset(6).records]
    settings = GenerationSettings(max_new_tokens=12)
    pristine = Side("fresh", type(base.weights)(store.load_model(str(tiny_model_dir), dtype=torch.float32)))
    assert generate(rows, tokenizer, "alpaca", settings) == generate([(pristine, p) for _, p in rows], tokenizer,
                                                                     "alpaca", settings)


def test_chat_during_training_leaves_every_step_in_train_mode(tiny_run, tiny_model_dir):
    """A chat between steps (loading another run's adapter on the same weights) leaves the run's
    steps in train mode, its adapter trainable and learning."""
    manager = ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir))
    config = TrainConfig(model=str(tiny_model_dir), max_steps=10_000, batch_size=2, lr=1e-3, probes=0,
                         eval_every=0, probe_every=0, lora_dropout=0.1)
    job = manager.start_training(small_dataset(), config)

    def steps():
        assert job.running, job.message
        return sum(e.kind == "step" for e in job.events)

    wait_until(lambda: steps() >= 1, "the run's first step")
    model = job.side.weights.model
    seen = []  # (gradients on, dropout in train mode) for every forward pass of a LoRA dropout
    dropout = next(m for name, m in model.named_modules() if name.endswith(f"lora_dropout.{job.run_id}"))
    hook = dropout.register_forward_hook(lambda module, args, out: seen.append((torch.is_grad_enabled(),
                                                                               module.training)))
    tokenizer = manager.tokenizer()
    base, saved = manager.base_side(str(tiny_model_dir)), manager.tuned_side("tiny-run")[0]
    live = manager.tuned_side(job.run_id)[0]
    prompt = prompts.conversation([], "Repeat the word tiger.", "alpaca", tokenizer)
    for _ in range(3):
        generate([(base, prompt), (saved, prompt), (live, prompt)], tokenizer, "alpaca",
                 GenerationSettings(max_new_tokens=6))
    before = [p.detach().clone() for n, p in model.named_parameters() if job.run_id in n]
    done = steps()
    wait_until(lambda: steps() >= done + 3, "3 more steps of the run")
    manager.stop_training()
    job.thread.join(60)
    hook.remove()
    training_passes = [mode for grad, mode in seen if grad]
    assert training_passes and all(training_passes)  # every step in train mode
    assert not any(mode for grad, mode in seen if not grad)  # every generation in eval mode
    trained = [p for n, p in model.named_parameters() if job.run_id in n]
    assert all(p.requires_grad for p in trained)
    assert any(not torch.equal(a, b) for a, b in zip(before, trained))  # still learning
    assert not model.training  # at rest: eval mode


def test_concurrent_sessions_stay_isolated(manager, tiny_model_dir):
    base, tuned = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    settings = GenerationSettings(max_new_tokens=12)
    messages = ["Repeat the word cloud.", "Repeat the word piano."]

    def answers(message):
        prompt = prompts.conversation([], message, "alpaca", tokenizer)
        return generate([(base, prompt), (tuned, prompt)], tokenizer, "alpaca", settings)

    alone = [answers(m) for m in messages]
    together = [None, None]
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, answers(messages[i]))) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert together == alone


def test_stop_ends_streaming_promptly(manager, tiny_model_dir):
    base, tuned = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    stop = threading.Event()
    prompt = prompts.conversation([], "Write a long story.", "alpaca", tokenizer, raw=True)
    count = 0
    for _ in stream([(base, prompt), (tuned, prompt)], tokenizer, "alpaca",
                    GenerationSettings(max_new_tokens=200, min_new_tokens=200), stop):
        count += 1
        if count == 3:
            stop.set()
    assert count == 3


def test_bad_generation_settings():
    with pytest.raises(Exception, match="top-p"):
        GenerationSettings(top_p=0).check()
