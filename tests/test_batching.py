"""Collate on handmade batches, with expectations worked out by hand from the book's rules."""

import torch

from playground import batching
from playground.batching import IGNORE_INDEX as X, Sample, collate, describe
from playground.data import Record

EOS = 50256  # GPT-2's <|endoftext|>, also its padding id in the book
# prompt 3 tokens, response 2, then end-of-text
LONG = Sample(ids=[10, 11, 12, 20, 21, EOS], prompt_len=3, index=0)
# prompt 2 tokens, response 1, then end-of-text
SHORT = Sample(ids=[30, 31, 40, EOS], prompt_len=2, index=1)


def test_book_collate_pad_shift_and_first_eos_kept():
    batch = collate([LONG, SHORT], pad_id=EOS)
    assert batch.inputs.tolist() == [[10, 11, 12, 20, 21],
                                     [30, 31, 40, EOS, EOS]]
    assert batch.targets.tolist() == [[11, 12, 20, 21, EOS],
                                      [31, 40, EOS, X, X]]


def test_matches_the_books_example():
    # the book's worked example: inputs_1 = [0,1,2,3,4], [5,6], [7,8,9], pad 50256
    samples = [Sample([0, 1, 2, 3, 4, EOS], 0), Sample([5, 6, EOS], 0), Sample([7, 8, 9, EOS], 0)]
    batch = collate(samples, pad_id=EOS)
    assert batch.inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, EOS, EOS, EOS], [7, 8, 9, EOS, EOS]]
    assert batch.targets.tolist() == [[1, 2, 3, 4, EOS], [6, EOS, X, X, X], [8, 9, EOS, X, X]]


def test_prompt_mask_masks_prompt_targets_only():
    batch = collate([LONG, SHORT], pad_id=EOS, mask="prompt")
    # LONG: targets 11 and 12 are prompt tokens -> -100; 20, 21, EOS trained
    # SHORT: target 31 is a prompt token -> -100
    assert batch.targets.tolist() == [[X, X, 20, 21, EOS],
                                      [X, 40, EOS, X, X]]


def test_truncation_cuts_inputs_and_targets():
    batch = collate([LONG, SHORT], pad_id=0, max_length=3)
    assert batch.inputs.tolist() == [[10, 11, 12], [30, 31, 40]]
    assert batch.targets.tolist() == [[11, 12, 20], [31, 40, EOS]]
    view = describe(batch)
    assert view.rows[0].truncated_ids == [21, EOS]
    assert view.rows[1].truncated_ids == []


def test_distinct_pad_id_and_kinds():
    batch = collate([LONG, SHORT], pad_id=0, mask="prompt")
    assert batch.inputs[1].tolist() == [30, 31, 40, 0, 0]
    view = describe(batch)
    assert view.rows[0].kinds == ["prompt_masked", "prompt_masked", "response", "response", "eos"]
    assert view.rows[1].kinds == ["prompt_masked", "response", "eos", "pad", "pad"]
    unmasked = describe(collate([LONG, SHORT], pad_id=0))
    assert unmasked.rows[0].kinds[:2] == ["prompt", "prompt"]
    assert (view.real_tokens, view.trained_tokens, view.computed_tokens) == (8, 5, 10)
    assert abs(view.padding_fraction - 0.2) < 1e-9


def test_every_pad_kind_is_ignored_and_every_trained_kind_is_not():
    view = describe(collate([LONG, SHORT, Sample([1, EOS], 0)], pad_id=EOS, mask="prompt"))
    for row in view.rows:
        for kind, target in zip(row.kinds, row.target_ids):
            assert (target == X) == (kind in ("pad", "prompt_masked"))


def test_batch_order_covers_every_index_once_and_grouping_reduces_padding():
    lengths = [(i * 37) % 97 + 5 for i in range(400)]
    for grouped in (False, True):
        batches = batching.batch_order(lengths, 8, seed=1, group_by_length=grouped)
        assert sorted(i for b in batches for i in b) == list(range(400))
        assert batches == batching.batch_order(lengths, 8, seed=1, group_by_length=grouped)

    def padding(batches):
        computed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        return 1 - sum(lengths) / computed

    assert padding(batching.batch_order(lengths, 8, 1, True)) < 0.05 < padding(batching.batch_order(lengths, 8, 1, False))


def test_encode_real_tokenizer_prompt_boundary(default_tokenizer):
    record = Record("Add 2 and 3.", "", "5")
    sample = batching.encode(record, "alpaca", default_tokenizer)
    tok = default_tokenizer
    assert sample.ids[0] == tok.bos_token_id and sample.ids[-1] == tok.eos_token_id
    assert tok.decode(sample.ids[:sample.prompt_len]).endswith("### Response:\n")
    assert tok.decode(sample.ids[sample.prompt_len:-1]) == "5"
    chat = batching.encode(record, "chat", tok)
    assert chat.ids.count(tok.bos_token_id) == 1  # the template writes <bos>; no second one added


def test_training_batch_uses_collate(default_tokenizer):
    records = [Record(f"Say {w}.", "", w) for w in ["yes", "no", "maybe so", "absolutely not"]]
    batch = batching.training_batch(records, [0, 1, 2, 3], default_tokenizer, "phi3", batch_size=4, mask="prompt")
    samples = [batching.encode(records[s.index], "phi3", default_tokenizer, index=s.index) for s in batch.samples]
    expected = collate(samples, default_tokenizer.pad_token_id, mask="prompt")
    assert torch.equal(batch.inputs, expected.inputs) and torch.equal(batch.targets, expected.targets)


def test_lengths_in_chunks_equal_one_record_at_a_time_on_the_bundled_dataset(default_tokenizer):
    from playground import data

    records = data.load(data.BUILTIN).records
    for style in ("alpaca", "phi3", "chat"):
        one_by_one = [len(batching.encode(r, style, default_tokenizer).ids) for r in records]
        chunked = batching.sample_lengths(records, style, default_tokenizer, chunk=100)
        assert chunked.dtype.name == "int32" and chunked.tolist() == one_by_one
    first = [batching.encode(r, "alpaca", default_tokenizer, index=i) for i, r in enumerate(records[:30])]
    assert batching.encode_all(records[:30], "alpaca", default_tokenizer) == first


def test_training_batch_is_the_batch_of_the_whole_split_encoded(default_tokenizer):
    from playground import data

    dataset = data.load(data.BUILTIN)
    indices = dataset.splits().train
    samples = batching.encode_all(dataset.records, "alpaca", default_tokenizer, indices=indices)
    for grouped in (False, True):
        order = batching.batch_order([len(s.ids) for s in samples], 8, seed=5, group_by_length=grouped)
        expected = collate([samples[i] for i in order[3]], default_tokenizer.pad_token_id, 64, "prompt")
        lengths = batching.dataset_lengths(dataset, "alpaca", default_tokenizer) if grouped else None
        for given in (None, lengths):
            batch = batching.training_batch(dataset.records, indices, default_tokenizer, "alpaca", 8, 3, 64, "prompt",
                                            grouped, 5, lengths=given)
            assert [s.index for s in batch.samples] == [s.index for s in expected.samples]
            assert torch.equal(batch.inputs, expected.inputs) and torch.equal(batch.targets, expected.targets)
