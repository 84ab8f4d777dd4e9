"""Side-by-side generation from one copy of the weights, on a tiny model and a tiny LoRA run."""

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from playground import store
from playground.generation import GenerationSettings, Side, chat_prompt, generate_sides, stream_sides
from playground.manager import ModelManager
from playground.training import TrainConfig, make_lora
from playground.ui.chat_tab import save_vote, tally


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def manager(tiny_run, tiny_model_dir):
    return ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir))


def sides(manager, tiny_model_dir):
    tuned, settings = manager.tuned_side("tiny-run")
    return manager.base_side(str(tiny_model_dir)), tuned, settings


def test_streaming_yields_growing_text(manager, tiny_model_dir):
    base, tuned, settings = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    prompt = chat_prompt([], "Repeat the word apple.", "alpaca", tokenizer)
    snapshots = list(stream_sides([base, tuned], [prompt, prompt], tokenizer, "alpaca",
                                  GenerationSettings(max_new_tokens=12), manager.lock))
    assert len(snapshots) >= 2
    for side in (0, 1):
        texts = [s[side] for s in snapshots]
        assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert snapshots[-1][0] and snapshots[-1][1]
    assert snapshots[-1][0] != snapshots[-1][1]  # the adapter changes the answer


def test_greedy_decoder_matches_transformers_generate(manager, tiny_model_dir):
    base, _, _ = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    text, _ = chat_prompt([], "Repeat the word river.", "alpaca", tokenizer)
    ids = tokenizer(text, return_tensors="pt").input_ids
    with base.model.disable_adapter(), torch.no_grad():
        expected = base.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                       min_new_tokens=10, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    expected_text = tokenizer.decode(expected[0, ids.shape[1]:], skip_special_tokens=True)
    answer = generate_sides([base], [(text, False)], tokenizer, "alpaca", GenerationSettings(max_new_tokens=10),
                            manager.lock)[0]
    assert expected_text.strip().startswith(answer)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_adapter_off_equals_base(manager, tiny_model_dir, temperature):
    base, tuned, _ = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    prompt = chat_prompt([], "Repeat the word stone.", "alpaca", tokenizer)
    settings = GenerationSettings(max_new_tokens=16, temperature=temperature, top_p=0.9, seed=7)
    switched_off = Side("tuned", tuned.model, None)  # the same run's model, adapter switched off
    base_answer, off_answer, on_answer = generate_sides([base, switched_off, tuned], [prompt] * 3, tokenizer,
                                                        "alpaca", settings, manager.lock)
    assert off_answer == base_answer
    assert on_answer != base_answer


def test_memory_with_both_is_within_five_percent_on_the_default_model(tmp_path):
    """The real default model with a LoRA adapter of the default settings on its shared weights."""
    manager = ModelManager(tmp_path)
    (tmp_path / store.DEFAULT_NAME).symlink_to(store.ensure_default_model(), target_is_directory=True)
    loaded = manager.model(store.DEFAULT)
    base_alone = manager.memory_report()
    loaded.model = make_lora(loaded.model, TrainConfig(), "run")
    both = manager.memory_report()
    assert both["base"] == base_alone["base"] and base_alone["adapters"] == 0 and both["full_copies"] == 0
    assert 0 < both["adapters"] < 0.05 * both["base"]


def test_concurrent_sessions_stay_isolated(manager, tiny_model_dir):
    base, tuned, _ = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    settings = GenerationSettings(max_new_tokens=12)
    messages = ["Repeat the word cloud.", "Repeat the word piano."]
    alone = [generate_sides([base, tuned], [chat_prompt([], m, "alpaca", tokenizer)] * 2, tokenizer, "alpaca",
                            settings, manager.lock) for m in messages]
    together = [None, None]

    def session(i):
        together[i] = generate_sides([base, tuned], [chat_prompt([], messages[i], "alpaca", tokenizer)] * 2,
                                     tokenizer, "alpaca", settings, manager.lock)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert together == alone


def test_stop_ends_generation_promptly(manager, tiny_model_dir):
    base, tuned, _ = sides(manager, tiny_model_dir)
    tokenizer = manager.tokenizer()
    stop = threading.Event()
    prompt = chat_prompt([], "Write a long story.", "alpaca", tokenizer, raw=True)
    count = 0
    for _ in stream_sides([base, tuned], [prompt] * 2, tokenizer, "alpaca", GenerationSettings(max_new_tokens=200),
                          manager.lock, stop):
        count += 1
        if count == 3:
            stop.set()
    assert count == 3


def test_bad_generation_settings():
    with pytest.raises(Exception, match="top-p"):
        GenerationSettings(top_p=0).check()


def test_votes_are_saved_with_the_run(tiny_run):
    save_vote(tiny_run, "tiny-run", "Repeat the word apple.", "tuned", "left")
    save_vote(tiny_run, "tiny-run", "Repeat the word river.", "tie", "right")
    assert tally(tiny_run, "tiny-run") == {"tuned": 1, "base": 0, "tie": 1, "both_bad": 0}


def test_chat_command(tiny_run):
    result = subprocess.run([sys.executable, "-m", "playground", "chat", "--run", "tiny-run", "--prompt",
                             "Repeat the word maple.", "--max-new-tokens", "8", "--models-dir", str(tiny_run)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    base, tuned = result.stdout.split("\n\nTuned:\n")
    assert base.startswith("Base:\n") and tuned.strip()
    assert "memory (parameters): base alone" in result.stderr
