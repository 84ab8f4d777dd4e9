"""Packing several samples into one row: the rows worked out by hand, each sample's loss in a packed row
equal to its loss alone (tiny model and the real default model), and a packed run's steps as planned."""

import pytest
import torch

from playground import batching, data, runs, store, training
from playground.batching import IGNORE_INDEX as X, PackedRow, Sample, collate, pack, pack_layout
from playground.errors import PlaygroundError
from playground.modeling import CausalLMLoss
from playground.settings import TrainConfig
from tests_helpers import small_dataset, train_tiny_run

EOS = 0
# prompt 3 tokens, response 2, then end-of-text: 5 input positions
LONG = Sample(ids=[10, 11, 12, 20, 21, EOS], prompt_len=3, index=0)
# prompt 2 tokens, response 1, then end-of-text: 3 input positions
SHORT = Sample(ids=[30, 31, 40, EOS], prompt_len=2, index=1)


def test_two_samples_in_one_row_keep_their_own_targets_masks_and_positions():
    batch = collate([PackedRow((LONG, SHORT))], pad_id=EOS, max_length=10, mask="prompt")
    assert batch.inputs.tolist() == [[10, 11, 12, 20, 21, 30, 31, 40]]
    # LONG's end-of-text is its last target; SHORT's first input is never a target of LONG
    assert batch.targets.tolist() == [[X, X, 20, 21, EOS, X, 40, EOS]]
    assert batch.positions.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert batch.real_tokens == 8


def test_a_packed_row_beside_a_shorter_one_is_padded_and_its_positions_go_on():
    batch = collate([PackedRow((LONG, SHORT)), PackedRow((SHORT,))], pad_id=EOS)
    assert batch.inputs.tolist()[1] == [30, 31, 40, EOS, EOS, EOS, EOS, EOS]
    assert batch.targets.tolist()[1] == [31, 40, EOS, X, X, X, X, X]
    assert batch.positions.tolist()[1] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert collate([LONG, SHORT], pad_id=EOS).positions is None  # unpacked batches pass no position ids


def test_best_fit_by_decreasing_length_fills_rows_closely():
    # input lengths 6, 5, 4, 3, 2 into rows of 8: 6+2, 5+3, 4
    assert pack_layout([6, 5, 4, 3, 2], 8) == [[0, 4], [1, 3], [2]]
    assert pack_layout([9, 1], 8) == [[0], [1]]  # a sample longer than a row fills one alone
    rows = pack([Sample(list(range(12)) + [EOS], 2, 0), SHORT], 8)
    assert [part.input_len for part in rows[0].parts] == [8]  # cut to the row, as collate would cut it
    assert rows[1].parts == (SHORT,)


def per_sample_losses(model, samples, positions_too=True):
    """Each sample's summed loss alone, and all of them packed into one row."""
    module = CausalLMLoss(model)
    with torch.no_grad():
        alone = [module(*(lambda b: (b.inputs, b.targets))(collate([s], EOS, None, "prompt")))[0] for s in samples]
        packed = collate([PackedRow(tuple(samples))], EOS, None, "prompt")
        together, _ = module(packed.inputs, packed.targets, packed.positions if positions_too else None)
    return sum(float(loss) for loss in alone), float(together)


def real_samples(tokenizer, count=3):
    records = data.load(data.BUILTIN).records[:count]
    return batching.encode_all(records, "alpaca", tokenizer)


def test_a_packed_row_gives_each_sample_its_loss_alone_on_the_tiny_model(tiny_model_dir):
    model = store.load_model(str(tiny_model_dir), dtype=torch.float32).eval()
    samples = real_samples(store.load_tokenizer(str(tiny_model_dir)))
    alone, together = per_sample_losses(model, samples)
    assert together == pytest.approx(alone, rel=1e-5)
    _, leaking = per_sample_losses(model, samples, positions_too=False)  # without the position ids: one sequence
    assert leaking != pytest.approx(alone, rel=1e-3)


def test_a_packed_row_gives_each_sample_its_loss_alone_on_the_default_model(default_tokenizer):
    model = store.load_model(store.DEFAULT, dtype=torch.float32).eval()
    alone, together = per_sample_losses(model, real_samples(default_tokenizer))
    assert together == pytest.approx(alone, rel=1e-4)


def test_a_packed_run_takes_the_planned_steps_over_fewer_rows(tiny_model_dir, tmp_path):
    dataset = small_dataset()
    config = TrainConfig(model=str(tiny_model_dir), epochs=1, batch_size=4, max_length=256, pack=True)
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    train = dataset.splits(seed=config.split_seed).train
    planned = training.planned_steps(config, tokenizer, dataset, train)
    assert planned < training.planned_steps(TrainConfig(**{**vars(config), "pack": False}), tokenizer, dataset, train)
    train_tiny_run(tiny_model_dir, tmp_path, "packed", dataset, max_steps=None, epochs=1, max_length=256, pack=True)
    steps = [row for row in runs.read(tmp_path, "packed").metrics() if row["kind"] == "step"]
    assert len(steps) == planned


@pytest.mark.parametrize("changes, message", [({"objective": "dpo"}, "packing is for supervised runs"),
                                              ({"max_length": None}, "packing fills rows of the max length")])
def test_packing_is_refused_where_it_cannot_apply(changes, message):
    with pytest.raises(PlaygroundError, match=message):
        TrainConfig(pack=True, **changes).check()
