"""The book's way as options: split order, masking, drop_last, presets, the tiktoken tokenizer,
the book's test answers, chat --input and skipping bad rows."""

import json

import pytest
import tiktoken

from playground import batching, data, prompts, run_data, runs, settings, tiktoken_tokenizer, training
from playground.data import Record
from playground.errors import DataError, PlaygroundError
from tests_helpers import run_cli

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@pytest.fixture(scope="module")
def small_tiktoken() -> tiktoken_tokenizer.TiktokenTokenizer:
    """A tiktoken encoding built here: the 256 bytes, a few merges, and <|endoftext|> after them."""
    ranks = {bytes([b]): b for b in range(256)}
    for pair in (b"##", b"###", b" R", b"es", b"\n\n", b"in", b"on", b"th", b"the", b" the"):
        ranks[pair] = len(ranks)
    encoding = tiktoken.Encoding("small-test", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                 special_tokens={"<|endoftext|>": len(ranks)})
    return tiktoken_tokenizer.TiktokenTokenizer(encoding, "small-test")


RECORDS = [Record("Name the capital of France.", "", "Paris."),
           Record("Sort the words.", "pear, apple", "apple, pear"),
           Record("Give an antonym of hot.", "", "cold"),
           Record("Add the numbers.", "2 and 3", "5")]


# ---------------------------------------------------------------- 1. split order


def test_book_split_slices_in_file_order_train_then_test_then_validation():
    splits = data.split_indices(20, order="book")
    assert splits.train == list(range(17)) and splits.test == [17, 18] and splits.validation == [19]
    assert data.split_indices(20, seed=5, order="book") == splits  # no shuffle: the seed changes nothing
    shuffled = data.split_indices(20, seed=5)
    assert shuffled == data.split_indices(20, seed=5, order="shuffled") and shuffled.train != splits.train
    with pytest.raises(DataError, match="unknown split order 'sorted'"):
        data.split_indices(20, order="sorted")


def test_a_run_records_its_split_order_and_finds_the_same_indices(tiny_model_dir, tmp_path):
    from tests_helpers import small_dataset, train_tiny_run

    dataset = small_dataset()
    folder = train_tiny_run(tiny_model_dir, tmp_path, "book-split", dataset, max_steps=1, split_order="book")
    saved = json.loads((folder / "data.json").read_text())
    assert saved["split"]["order"] == "book" and run_data.split_order(saved) == "book"
    assert saved["indices"]["train"] == list(range(10)) and saved["indices"]["test"] == [10]
    found = run_data.load(tmp_path, runs.read(tmp_path, "book-split"))
    assert found.splits == dataset.splits(order="book")
    del saved["split"]["order"]  # a run saved before the order was recorded was shuffled
    assert run_data.split_order(saved) == "shuffled"


# ---------------------------------------------------------------- 2. masking


def test_instruction_masking_trains_the_response_header(small_tiktoken):
    samples = batching.encode_all(RECORDS, "alpaca", small_tiktoken)
    header = len(small_tiktoken.encode(prompts.ALPACA_HEADER))
    counts = {mask: batching.collate(samples, 0, None, mask).trained_tokens for mask in settings.MASKS}
    assert counts["instruction"] == counts["prompt"] + header * len(RECORDS)
    assert counts["none"] == sum(len(s.ids) - 1 for s in samples)
    for sample, record in zip(samples, RECORDS):  # the book's instruction length: format_input alone
        assert sample.instruction_len == len(small_tiktoken.encode(prompts.alpaca_instruction(record)))
        assert sample.prompt_len == sample.instruction_len + header
    batch = batching.collate(samples, 0, None, "instruction")
    first_trained = (batch.targets[0] != batching.IGNORE_INDEX).nonzero()[0].item()
    assert first_trained == samples[0].instruction_len - 1  # the book's targets[:instruction_length-1] = -100


def test_masks_go_by_name_and_older_runs_flag_is_read_as_one(small_tiktoken):
    samples = batching.encode_all(RECORDS, "alpaca", small_tiktoken)
    for wrong in ("all", True):
        with pytest.raises(PlaygroundError, match=f"Unknown masking {wrong!r}: use one of none, prompt, instruction"):
            batching.collate(samples, 0, None, wrong)
    with pytest.raises(PlaygroundError, match="mask must be one of none, prompt, instruction, not True"):
        settings.TrainConfig(mask=True).check()
    assert "mask_instruction" not in vars(settings.TrainConfig())
    # a run saved before masks had names holds the flag: True was the whole prompt
    assert settings.TrainConfig.from_dict({"mask_instruction": True}).mask == "prompt"
    assert settings.TrainConfig.from_dict({"mask_instruction": False}).mask == "none"
    assert settings.TrainConfig.from_dict({"mask_instruction": False, "mask": "instruction"}).mask == "instruction"


def test_the_batch_view_colours_the_header_differently(small_tiktoken):
    views = {mask: batching.describe(batching.training_batch(RECORDS, [0, 1], small_tiktoken, "alpaca", 2, mask=mask))
             for mask in ("prompt", "instruction")}
    for row_prompt, row_instruction in zip(views["prompt"].rows, views["instruction"].rows):
        changed = [p for p, (a, b) in enumerate(zip(row_prompt.kinds, row_instruction.kinds)) if a != b]
        assert changed and all(row_prompt.kinds[p] == "prompt_masked" and row_instruction.kinds[p] == "prompt"
                               for p in changed)
        texts = batching.token_text(small_tiktoken, [row_prompt.next_ids[p] for p in changed])
        assert "".join(texts).replace("↵", "\n").replace("␣", " ") == prompts.ALPACA_HEADER


def test_other_styles_name_their_header():
    record = RECORDS[1]
    assert prompts.render(record, "phi3").header == prompts.PHI3_HEADER
    custom = prompts.render(record, "custom", template="Q: {instruction}\n{input}\nA: {output}")
    assert custom.header == "\nA: " and custom.instruction == "Q: Sort the words.\npear, apple"


def test_data_check_accepts_mask_names(tiny_model_dir):
    from playground import data_checks, store

    dataset = data.Dataset(records=list(RECORDS), source="test", mapping={})
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    chosen = data_checks.CheckSettings(max_length=None, mask="instruction", split_order="book")
    counts = data_checks.token_counts(dataset, tokenizer, chosen)
    prompt = data_checks.token_counts(dataset, tokenizer, data_checks.CheckSettings(max_length=None, mask="prompt"))
    assert (counts.trained > prompt.trained).all()
    report = data_checks.check(dataset, tokenizer, chosen)
    assert "masking instruction" in next(iter(data_checks.lines(report)))
    with pytest.raises(PlaygroundError, match="Unknown masking 'everything'"):
        data_checks.CheckSettings(mask="everything")


# ---------------------------------------------------------------- 3. drop_last


def test_drop_last_leaves_out_the_smaller_batch():
    lengths = [5] * 10
    assert [len(b) for b in batching.batch_order(lengths, 4, seed=1)] == [4, 4, 2]
    assert [len(b) for b in batching.batch_order(lengths, 4, seed=1, drop_last=True)] == [4, 4]
    grouped = batching.batch_order(list(range(10)), 4, seed=1, group_by_length=True, drop_last=True)
    assert sorted(len(b) for b in grouped) == [4, 4]
    config = training.TrainConfig(batch_size=4, epochs=1, drop_last=True)
    assert training.total_steps_for(config, 10) == 2
    config.drop_last = False
    assert training.total_steps_for(config, 10) == 3


def test_drop_last_with_fewer_records_than_a_batch_is_refused(tiny_model_dir, tmp_path):
    from playground import store
    from playground.weights import Weights

    dataset = data.Dataset(records=list(RECORDS) * 2, source="test", mapping={})  # 6 train records
    config = training.TrainConfig(model=str(tiny_model_dir), batch_size=8, max_steps=1, probes=0, drop_last=True)
    side = training.prepare_model(Weights(store.load_model(str(tiny_model_dir))), config, "few", tmp_path, None, "cpu")
    state, message, _ = training.run_training(side, store.load_tokenizer(str(tiny_model_dir)), dataset, config,
                                              tmp_path, "few")
    assert state == "failed" and "fewer than one batch of 8" in message


# ---------------------------------------------------------------- 4. the book's test answers


def test_book_answers_strip_the_header_text():
    from playground import evaluation

    rendered = prompts.render(RECORDS[0], "alpaca")
    assert evaluation.book_answer("### Response:\nParis.  ", rendered) == "Paris."
    assert evaluation.answer_prompt(rendered, "book").text == prompts.alpaca_instruction(RECORDS[0])
    assert evaluation.answer_prompt(rendered, "playground").text == rendered.prompt
    phi3 = prompts.render(RECORDS[0], "phi3")
    assert evaluation.book_answer("<|assistant|>: Paris.", phi3) == "Paris."


def test_grading_with_the_books_answers(tiny_run, tiny_model_dir):
    from playground import evaluation, generation
    from playground.generation import GenerationSettings
    from playground.manager import ModelManager

    manager = ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir))
    ours = evaluation.generate_responses(manager, "tiny-run", "test", 1, GenerationSettings(max_new_tokens=8))
    book = evaluation.generate_responses(manager, "tiny-run", "test", 1, GenerationSettings(max_new_tokens=8),
                                         answers="book")
    assert book.parent != ours.parent  # its own grading folder
    meta = json.loads((book.parent / "grading.json").read_text())
    assert meta["answers"] == "book" and meta["generation"]["max_new_tokens"] == 256
    assert "answers" not in json.loads((ours.parent / "grading.json").read_text())
    record = json.loads(book.read_text())[0]
    tokenizer = manager.tokenizer(str(tiny_model_dir))
    rendered = prompts.render(data.Record(record["instruction"], record["input"], record["output"]), "alpaca")
    tuned, _ = manager.tuned_side("tiny-run")
    expected = generation.generate([(tuned, prompts.Prompt(rendered.instruction))], tokenizer, "alpaca",
                                   GenerationSettings(max_new_tokens=256))[0]
    assert record["tuned_response"] == evaluation.book_answer(expected, rendered)
    with pytest.raises(PlaygroundError, match="Unknown answers 'exact'"):
        evaluation.generate_responses(manager, "tiny-run", "test", 1, GenerationSettings(), answers="exact")


# ---------------------------------------------------------------- 5. presets


def test_the_books_presets():
    book = training.TrainConfig(**training.PRESETS["The book (full fine-tune)"])
    book.check()
    assert (book.method, book.lr, book.weight_decay, book.epochs, book.batch_size) == ("full", 5e-5, 0.1, 2, 8)
    assert (book.split_order, book.mask, book.drop_last, book.max_steps) == ("book", "none", True, None)
    assert (book.batch_order, book.group_by_length) == ("book", False)
    lora = training.TrainConfig(**training.PRESETS["The book, exercise 7.4 (LoRA)"])
    lora.check()
    assert (lora.method, lora.lora_r, lora.lora_alpha, lora.lr, lora.batch_order) == ("lora", 16, 16, 5e-5, "book")
    assert {"Quick CPU demo", "GPU"} <= set(training.PRESETS)


# ---------------------------------------------------------------- 6. the book's tokenizer


def test_tiktoken_adapter_encodes_decodes_and_pads_with_end_of_text(small_tiktoken):
    eos = small_tiktoken.eos_token_id
    assert eos == len(small_tiktoken) - 1 and batching.special_ids(small_tiktoken) == (eos, eos)
    ids = small_tiktoken(["the ### Response"]).input_ids[0]
    assert small_tiktoken.decode(ids) == "the ### Response"
    assert small_tiktoken.convert_ids_to_tokens(ids)[0] == "the"
    assert small_tiktoken(["<|endoftext|>"]).input_ids[0] != [eos]  # typed text stays text
    batch = batching.training_batch(RECORDS, [0, 1, 2, 3], small_tiktoken, "alpaca", 4)
    shortest = min(range(4), key=lambda row: len(batch.samples[row].ids))
    assert batch.inputs[shortest, -1].item() == eos  # padded with end-of-text, as the book pads with 50256
    assert batching.token_text(small_tiktoken, [eos]) == ["<|endoftext|>"]
    with pytest.raises(PlaygroundError, match="no chat template"):
        prompts.render(RECORDS[0], "chat", small_tiktoken)


def test_tiktoken_without_its_files_and_without_network_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(tiktoken_tokenizer, "GPT2_FILES", ("https://encodings.invalid/gpt-2/vocab.bpe",
                                                          "https://encodings.invalid/gpt-2/encoder.json"))
    with pytest.raises(PlaygroundError) as error:
        tiktoken_tokenizer.load()
    text = str(error.value)
    assert "encoding files are not here" in text and "vocab.bpe and encoder.json" in text
    assert "encodings.invalid cannot be reached" in text
    assert "TIKTOKEN_CACHE_DIR" in text and str(tmp_path / "empty-cache") in text


# ---------------------------------------------------------------- 7. chat --input


def test_chat_takes_an_input_section(tiny_run):
    prompt = prompts.conversation([], "Sort the words.", "alpaca", None, input_text="pear, apple")
    assert prompt.text == prompts.render(RECORDS[1], "alpaca").prompt
    result = run_cli("chat", "--run", "tiny-run", "--prompt", "Sort the words.", "--input", "pear, apple",
                     "--max-new-tokens", "4", "--models-dir", str(tiny_run))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("Base:\n") and "\n\nTuned:\n" in result.stdout


# ---------------------------------------------------------------- 8. bad rows


BAD_ROWS = [{"instruction": "Say hi.", "input": "", "output": "hi"},
            {"instruction": None, "input": "", "output": ""},
            {"instruction": "Say bye.", "input": "", "output": "bye"},
            {"instruction": "Count to two.", "output": 2}]


def test_skip_bad_rows_loads_the_rest_and_lists_each_skipped_row(write):
    path = write("rows.json", BAD_ROWS)
    with pytest.raises(DataError, match="record 2, field 'instruction': must be text"):
        data.load(str(path))  # strict by default
    dataset = data.load(str(path), skip_bad_rows=True)
    assert [r.instruction for r in dataset.records] == ["Say hi.", "Say bye."]
    assert [row for row, _ in dataset.skipped] == [2, 4]
    assert dataset.skipped[0][1] == ("record 2: field 'instruction': must be text, got NoneType; "
                                     "field 'output': is empty")
    assert "must be text, got int" in dataset.skipped[1][1]
    lines = write("rows.jsonl", '{"instruction": "a", "output": "b"}\n{broken\n')
    assert [row for row, _ in data.load(str(lines), skip_bad_rows=True).skipped] == [2]
    with pytest.raises(DataError, match="every row is bad"):
        data.load(str(write("none.json", BAD_ROWS[1:2])), skip_bad_rows=True)


def test_a_run_records_the_skipped_rows_and_loads_its_data_again(tiny_model_dir, tmp_path, write):
    from tests_helpers import train_tiny_run

    rows = [{"instruction": f"Repeat {w}.", "input": "", "output": f"{w} {w}"} for w in
            ["oak", "elm", "ash", "fir", "yew", "bay", "box", "fig", "lime", "pine"]]
    path = write("mine.json", rows[:3] + [BAD_ROWS[1]] + rows[3:])
    dataset = data.load(str(path), skip_bad_rows=True)
    train_tiny_run(tiny_model_dir, tmp_path / "store", "skipping", dataset, max_steps=1)
    saved = json.loads((tmp_path / "store" / "runs" / "skipping" / "data.json").read_text())
    assert saved["skip_bad_rows"] is True and [s["row"] for s in saved["skipped"]] == [4]
    found = run_data.load(tmp_path / "store", runs.read(tmp_path / "store", "skipping"))
    assert found.note == "" and len(found.dataset) == 10  # from its origin, skipping the same row


def test_cli_skip_bad_rows_split_order_and_masks(write, tiny_model_dir):
    path = write("rows.json", BAD_ROWS + [{"instruction": f"Say {i}.", "input": "", "output": str(i)}
                                          for i in range(16)])
    strict = run_cli("data", "validate", str(path))
    assert strict.returncode == 2 and "record 2, field 'instruction'" in strict.stderr
    result = run_cli("data", "validate", str(path), "--skip-bad-rows", "--split-order", "book")
    assert result.returncode == 0, result.stderr
    assert "skipped: record 2" in result.stderr and "skipped: record 4" in result.stderr
    assert "18 records" in result.stdout and "splits (book): train 15, validation 2, test 1" in result.stdout
    trained = {}
    for flags in (["--mask", "none"], ["--mask", "prompt"], ["--mask", "instruction"]):
        batch = run_cli("batch", str(path), "--skip-bad-rows", "--tokenizer", str(tiny_model_dir), "--batch-size", "4",
                        "--split-order", "book", "--json", *flags)
        assert batch.returncode == 0, batch.stderr
        shown = json.loads(batch.stdout)
        trained[" ".join(flags)] = shown["trained_tokens"]
    assert trained["--mask prompt"] < trained["--mask instruction"] < trained["--mask none"]
    refused = run_cli("batch", str(path), "--skip-bad-rows", "--tokenizer", str(tiny_model_dir), "--mask-instruction")
    assert refused.returncode == 2 and "unrecognized arguments: --mask-instruction" in refused.stderr


# ---------------------------------------------------------------- the tabs' helpers


def test_batch_tab_shows_each_masking_on_the_same_batch(small_tiktoken):
    from playground.ui import batch_tab

    dataset = data.Dataset(records=list(RECORDS) * 5, source="test", mapping={})
    shown = {part: batch_tab.batch_view(dataset, small_tiktoken, "alpaca", None, 4, 0, "train", 123, part, False, 0,
                                        "book", True)
             for part in ("prompt", "instruction")}
    header = len(small_tiktoken.encode(prompts.ALPACA_HEADER))
    trained = {part: int(summary.split("<b>")[3].split("<")[0]) for part, (_, summary, _) in shown.items()}
    assert trained["instruction"] == trained["prompt"] + 4 * header
    assert shown["prompt"][2] != shown["instruction"][2]  # the grid's colours differ


def test_dataset_tab_lists_the_skipped_rows(write):
    from types import SimpleNamespace

    from playground.ui import dataset_tab

    path = write("rows.json", BAD_ROWS)
    shared = SimpleNamespace(max_file_mb=10)
    refused = dataset_tab.load_source(shared, str(path), ("", "", ""))
    assert "record 2, field &#x27;instruction&#x27;" in refused[1]
    dataset, message, *_ = dataset_tab.load_source(shared, str(path), ("", "", ""), skip_bad_rows=True)
    assert len(dataset) == 2 and "Skipped 2 bad rows" in message
    assert "record 2: field &#x27;instruction&#x27;: must be text" in message and "record 4: field" in message


def test_a_run_saved_with_the_older_mask_flag_compares_by_todays_settings(tiny_run, tmp_path):
    import shutil

    from playground import comparison

    models = tmp_path / "store"
    shutil.copytree(tiny_run, models)
    shutil.copytree(models / "runs" / "tiny-run", models / "runs" / "older")
    config_file = models / "runs" / "older" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["settings"]["mask"] == "none"
    for name in ("mask", "batch_order"):  # what a run saved before these settings had names holds
        del config["settings"][name]
    config["settings"]["mask_instruction"] = False
    config_file.write_text(json.dumps(config))
    summaries = comparison.compare(models, ["tiny-run", "older"])
    assert comparison.differing_settings(summaries) == [] and comparison.loss_caveat(summaries) == ""
    config["settings"]["mask_instruction"] = True
    config_file.write_text(json.dumps(config))
    rows = comparison.differing_settings(comparison.compare(models, ["tiny-run", "older"]))
    assert rows == [{"setting": "mask", "tiny-run": "none", "older": "prompt"}]
