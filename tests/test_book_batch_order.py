"""The book's batch order: its DataLoader's batches, batch for batch, in the Batch tab, on the
command line and in training (resumed runs included)."""

import json

import pytest
import torch
from torch.utils.data import DataLoader

from playground import batching, data, settings
from playground.errors import PlaygroundError
from tests_helpers import run_cli

# The book's train split of its 1,100 records: the first 85%, in file order.
BOOK_TRAIN = 935
# The first batch of the book's train_loader (torch.manual_seed(123), batch_size=8, shuffle=True, drop_last=True).
BOOK_FIRST_BATCH = [8, 709, 639, 313, 769, 407, 12, 173]


def book_loader_epochs(count: int, batch_size: int, seed: int, epochs: int) -> list[list[list[int]]]:
    """The batches of each epoch as the book's code makes them: the global seed, then one
    DataLoader with shuffle=True iterated once per epoch (indices stand in for its dataset)."""
    torch.manual_seed(seed)
    loader = DataLoader(range(count), batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=list)
    return [list(loader) for _ in range(epochs)]


def test_the_book_order_is_the_books_dataloader_epoch_after_epoch():
    books = book_loader_epochs(BOOK_TRAIN, 8, 123, epochs=3)
    assert books[0][0] == BOOK_FIRST_BATCH
    for epoch, expected in enumerate(books):
        assert batching.batch_order([0] * BOOK_TRAIN, 8, 123, drop_last=True, order="book", epoch=epoch) == expected
    other_seed = book_loader_epochs(20, 4, 7, epochs=1)[0]
    assert batching.batch_order([0] * 20, 4, 7, drop_last=True, order="book") == other_seed
    kept = batching.batch_order([0] * 21, 4, 7, order="book")  # without drop_last the last, smaller batch stays
    assert [len(b) for b in kept] == [4] * 5 + [1] and sorted(sum(kept, [])) == list(range(21))


def test_the_book_order_refuses_grouping_and_unknown_orders():
    with pytest.raises(PlaygroundError, match="does not group batches by length"):
        batching.batch_order([3, 1, 2], 2, order="book", group_by_length=True)
    with pytest.raises(PlaygroundError, match="Unknown batch order 'sorted': use one of shuffled, book"):
        batching.batch_order([3, 1, 2], 2, order="sorted")
    with pytest.raises(PlaygroundError, match="turn group by length off"):
        settings.TrainConfig(batch_order="book").check()  # TrainConfig groups by default
    with pytest.raises(PlaygroundError, match="batch order must be one of shuffled, book, not 'file'"):
        settings.TrainConfig(batch_order="file", group_by_length=False).check()
    settings.TrainConfig(batch_order="book", group_by_length=False).check()


def book_sized_records(count: int = 1100) -> list[dict[str, str]]:
    """As many records as the book's data, each naming its own row number."""
    return [{"instruction": f"Repeat the number {i}.", "input": "", "output": str(i)} for i in range(count)]


def test_the_batch_command_and_tab_show_the_books_first_batch_by_record_number(write, tiny_model_dir):
    from playground import store
    from playground.ui import batch_tab

    path = write("book-sized.json", book_sized_records())
    result = run_cli("batch", str(path), "--split-order", "book", "--batch-order", "book", "--drop-last",
                     "--tokenizer", str(tiny_model_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert [row["index"] for row in json.loads(result.stdout)["rows"]] == BOOK_FIRST_BATCH

    dataset, tokenizer = data.load(str(path)), store.load_tokenizer(str(tiny_model_dir))

    def shown(number, batch_order):
        """The record numbers the tab titles the samples of batch `number` with."""
        _, _, grid = batch_tab.batch_view(dataset, tokenizer, "alpaca", None, 8, 0, "train", 123, "none", False,
                                          number, "book", True, batch_order)
        return [int(part.split(" · ")[0]) for part in grid.split("record #")[1:]]

    assert shown(0, "book") == BOOK_FIRST_BATCH  # record numbers: the book's train indices
    assert shown(1, "book") == book_loader_epochs(BOOK_TRAIN, 8, 123, epochs=1)[0][1]
    assert shown(0, "shuffled") != BOOK_FIRST_BATCH


def run_in_book_order(model_dir, models, run_id, dataset, stop_at=None, resume=None):
    """A LoRA run of 10 steps over 2 epochs of 4 batches of 4 (17 train records, the last one
    dropped), batches in the book's order; `stop_at` presses Stop once that step is logged."""
    import threading

    from playground import store
    from playground.training import prepare_model, run_training
    from playground.weights import Weights

    config = settings.TrainConfig(model=str(model_dir), max_steps=10, batch_size=4, lr=5e-3, warmup_steps=2,
                                  lora_r=4, lora_alpha=8, lora_dropout=0.1, eval_every=0, probes=0, probe_every=0,
                                  checkpoint_every=3, batch_order="book", group_by_length=False, drop_last=True,
                                  split_order="book", seed=7)
    stop = threading.Event()

    def on_event(event):
        if stop_at is not None and event.kind == "step" and event.step >= stop_at:
            stop.set()

    side = prepare_model(Weights(store.load_model(str(model_dir))), config, run_id, models, None, "cpu", resume)
    state, message, result = run_training(side, store.load_tokenizer(str(model_dir)), dataset, config, models,
                                          run_id, on_event=on_event, stop=stop, resume=resume)
    return config, state, message, result


def trained_tokens_curve(models, run_id):
    from playground import runs

    return [(r["step"], r["trained_tokens"]) for r in runs.read(models, run_id).metrics() if r["kind"] == "step"]


def test_a_run_trains_on_the_books_batches_and_resumes_in_the_same_order(tiny_model_dir, tmp_path):
    from playground import checkpoints, store

    records = data.load("builtin").records[:20]  # of different lengths, so each batch has its own token count
    dataset = data.Dataset(records=records, source="test", mapping={})
    config, state, message, _ = run_in_book_order(tiny_model_dir, tmp_path, "whole", dataset)
    assert state == "finished", message
    # what each step trains on: the book loader's batches, epoch after epoch (seed 7)
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    train = dataset.splits(order="book").train
    samples = batching.encode_all(dataset.records, "alpaca", tokenizer, indices=train)
    expected, total = [], 0
    for epoch, batches in enumerate(book_loader_epochs(len(train), 4, 7, epochs=3)):
        assert batching.batch_order([0] * len(train), 4, 7, drop_last=True, order="book", epoch=epoch) == batches
        for batch in batches:
            collated = batching.collate([samples[i] for i in batch], tokenizer.eos_token_id, config.max_length)
            total += collated.trained_tokens
            expected.append((len(expected) + 1, total))
    assert trained_tokens_curve(tmp_path, "whole") == expected[:10]

    _, state, message, result = run_in_book_order(tiny_model_dir, tmp_path, "broken", dataset, stop_at=6)
    assert state == "stopped" and result["steps"] == 6, message  # in the second epoch, at its second batch
    latest = checkpoints.latest(tmp_path / "runs" / "broken")
    _, state, message, _ = run_in_book_order(tiny_model_dir, tmp_path, "broken", dataset, resume=latest)
    assert state == "finished", message
    assert trained_tokens_curve(tmp_path, "broken") == expected[:10]
