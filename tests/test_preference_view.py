"""Preference data shown: a pair's two responses compared word by word in the Dataset tab, and a batch of
pairs as DPO collates it in the Batch masking tab and the `batch` command."""

import re

import pytest

from playground import batching, data, dpo, pair_diff, tiktoken_tokenizer
from playground.ui import batch_tab, dataset_tab
from playground.ui.common import COLORS
from test_book_files import book_gpt2_folder  # noqa: F401 (a fixture: GPT-2's files by the book's names)
from tests_helpers import run_cli


@pytest.fixture(scope="module")
def gpt2(book_gpt2_folder):  # noqa: F811
    """The book's GPT-2 tokenizer through tiktoken, from the book's files."""
    return tiktoken_tokenizer.load(folder=book_gpt2_folder)

BOOK_PAIRS = [  # the book's instruction-data-with-preference.json keys
    {"instruction": "Edit the sentence for grammar.", "input": "He go to the park every day.",
     "output": "He goes to the park every day.", "chosen": "He goes to the park every day.",
     "rejected": "He goes to the stupid park every single day, obviously."},
    {"instruction": "Convert 45 kilometers to meters.", "input": "", "output": "45000 meters.",
     "chosen": "45000 meters.", "rejected": "45000 meters!"},
]


def test_the_word_diff_marks_exactly_the_changed_words_and_escapes_them_in_html():
    chosen, rejected = "It is a <b>cat</b> & more", "It was a <b>cat</b> & a dog"
    diff = pair_diff.word_diff(chosen, rejected)
    assert pair_diff.changed_text(diff.chosen) == ["is", "more"]
    assert pair_diff.changed_text(diff.rejected) == ["was", "a dog"]
    assert (diff.only_chosen, diff.only_rejected, diff.shared) == (2, 3, 4)
    assert "".join(t for t, _ in diff.chosen) == chosen and "".join(t for t, _ in diff.rejected) == rejected
    shown = dataset_tab.diff_text(diff.rejected, "del")
    assert shown == "It <del>was</del> a &lt;b&gt;cat&lt;/b&gt; &amp; <del>a dog</del>"
    assert pair_diff.word_diff("same words", "same words").only_chosen == 0


def test_the_record_view_of_a_pair_shows_both_sides_and_their_difference(write):
    pairs = data.load(write("pairs.json", BOOK_PAIRS))
    shown = dataset_tab.record_html(pairs, 0)
    sides = re.findall(r'data-side="(\w+)".*?<div class="pg-text">(.*?)</div>', shown)
    assert sides == [("chosen", "He goes to the park every <ins>day.</ins>"),  # "day." is not "day,"
                     ("rejected", "He goes to the <del>stupid</del> park every <del>single day, obviously.</del>")]
    assert "<ins>1 word only in chosen</ins> · <del>4 only in rejected</del> · 6 in both." in shown
    assert "This pair:" not in shown  # no finding about it
    same = dataset_tab.record_html(pairs, 1)  # the same up to punctuation: the data check's finding
    assert "<ins>meters.</ins>" in same and "<del>meters!</del>" in same
    assert "This pair: chosen equals rejected" in same
    assert "chosen equals rejected" in dataset_tab.stats_html(pairs)

    plain = data.load("builtin")
    record = plain.records[3]
    shown = dataset_tab.record_html(plain, 3)
    assert html_text(shown).count(record.output) == 1
    assert not any(mark in shown for mark in ("record-pair", "<ins>", "<del>", "chosen", "rejected"))
    assert "dataset-pairs" not in dataset_tab.stats_html(plain)


def html_text(shown: str) -> str:
    return re.sub(r"<[^>]+>", "", shown)


def test_a_preference_batch_view_trains_each_pair_s_chosen_and_rejected_response_only(gpt2):
    pairs = data.load(data.BUILTIN_PAIRS)
    warning, summary, grid = batch_tab.batch_view(pairs, gpt2, "alpaca", None, 3, 0, "train", 123, "prompt", False, 0)
    assert warning == "" and "mean log-probability of its response and end-of-text targets" in summary
    rows = re.findall(r'<div class="pg-sample" data-pair="(\d+)" data-side="(\w+)">(.*?)(?=<div class="pg-sample"|$)',
                      grid, re.DOTALL)
    assert [(int(n), side) for n, side, _ in rows] == [(1, "chosen"), (1, "rejected"), (2, "chosen"),
                                                       (2, "rejected"), (3, "chosen"), (3, "rejected")]
    records = [int(re.search(r"record #(\d+)", body).group(1)) for _, _, body in rows]
    assert records[0::2] == records[1::2]  # both rows of a pair come from one record
    encoded = dpo.encode_pairs(pairs.records, "alpaca", gpt2, indices=records[0::2])
    batch = dpo.collate_pairs(encoded, batching.special_ids(gpt2)[1], mask="prompt")
    trained_colours = {COLORS["response"], COLORS["eos"]}
    for (number, side, body), in_batch in zip(rows, [0, 3, 1, 4, 2, 5]):  # collate_pairs: chosen rows, then rejected
        colours = re.findall(r'class="pg-tg" style="background:([^"]+)"', body)
        shown_trained = [p for p, colour in enumerate(colours) if colour in trained_colours]
        trained = (batch.targets[in_batch] != batching.IGNORE_INDEX).nonzero().flatten().tolist()
        sample = batch.samples[in_batch]
        assert shown_trained == trained == list(range(sample.prompt_len - 1, len(sample.ids) - 1))
        response = getattr(encoded[int(number) - 1], side)
        assert sample.ids == response.ids


def test_a_preference_batch_grouped_by_length_takes_the_pairs_training_groups(gpt2):
    pairs = data.load(data.BUILTIN_PAIRS)
    split = pairs.splits().validation
    lengths = [p.length for p in dpo.encode_pairs(pairs.records, "alpaca", gpt2, indices=split)]  # the run's order
    expected = [split[i] for i in batching.batch_order(lengths, 4, 7, group_by_length=True)[1]]
    batch = dpo.training_pairs(pairs.records, split, gpt2, "alpaca", 4, number=1, group_by_length=True, seed=7)
    assert [s.index for s in batch.samples] == expected + expected


def test_the_batch_command_prints_each_pair_s_chosen_and_rejected_rows(gpt2, book_gpt2_folder):  # noqa: F811
    result = run_cli("batch", "builtin-pairs", "--batch-size", "2", "--mask", "prompt", "--max-length", "64",
                     "--tokenizer", book_gpt2_folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    titles = [line for line in lines if line.startswith("pair ")]
    found = [re.match(r"pair (\d) · record #(\d+) · (chosen|rejected) · (\d+) trained targets", t).groups()
             for t in titles]
    assert [(n, side) for n, _, side, _ in found] == [("1", "chosen"), ("1", "rejected"), ("2", "chosen"),
                                                       ("2", "rejected")]
    pairs = data.load(data.BUILTIN_PAIRS)
    split = pairs.splits().train
    batch = dpo.training_pairs(pairs.records, split, gpt2, "alpaca", 2, max_length=64, mask="prompt")
    trained = (batch.targets != batching.IGNORE_INDEX).sum(dim=1).tolist()
    assert [(int(record), int(count)) for _, record, _, count in found] == [
        (batch.samples[row].index, trained[row]) for row in (0, 2, 1, 3)]
    assert any(line.startswith("batch of 2 pairs: 4 rows × ") for line in lines)
    assert lines[-1].startswith("DPO scores each row by the mean log-probability")
