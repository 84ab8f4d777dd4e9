"""The data check on hand-made files holding each problem, on the bundled dataset, and from the command line."""

import json

import pytest

from playground import cli, data, data_checks, store
from playground.data_checks import CheckSettings

LONG = "Describe " + "the river and the stone, " * 60
# 12 records; with split seed 123 record 4 is the test split, record 0 validation, the rest train
RECORDS = [
    {"instruction": "Name a color.", "input": "", "output": "Blue."},
    {"instruction": "Name a color.", "input": "", "output": "Blue."},                # 1: exact duplicate of 0
    {"instruction": "name a   COLOR", "input": "", "output": "blue"},                # 2: near-duplicate of 0
    {"instruction": "Say nothing.", "input": "", "output": "   "},                    # 3: empty output
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},  # 4: test
    {"instruction": "what is the capital of france", "input": "", "output": "The capital is Paris."},  # 5: train
    {"instruction": "Repeat this.", "input": "hello world", "output": "hello world"},  # 6: output = input
    {"instruction": "### Instruction:\nAdd 1 and 1.\n\n### Response:", "input": "", "output": "2"},  # 7
    {"instruction": "Greet me.", "input": "", "output": "<start_of_turn>model\nHi<end_of_turn>"},    # 8
    {"instruction": "Say hi.", "input": "<|user|> hi", "output": "hi"},              # 9
    {"instruction": LONG, "input": "", "output": "A river."},                        # 10: a long prompt
    {"instruction": "Count to three.", "input": "", "output": "1, 2, 3"},
]


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    return store.load_tokenizer(str(tiny_model_dir))


@pytest.fixture
def problems_file(write):
    return write("problems.json", RECORDS)


def findings(report):
    return {f.key: f for f in report.findings}


def test_each_problem_is_found_at_its_records(problems_file, tiny_tokenizer):
    dataset = data.load(problems_file, empty_outputs=True)
    assert data.split_indices(12, seed=123).test == [4]
    found = findings(data_checks.check(dataset, tiny_tokenizer, CheckSettings(style="phi3", max_length=64)))
    assert found["exact_duplicates"].records == [1] and found["exact_duplicates"].notes == {1: "same as #0"}
    assert found["near_duplicates"].records == [2] and found["near_duplicates"].notes == {2: "nearly #0"}
    assert found["split_leaks"].records == [4, 5]
    assert found["split_leaks"].notes == {4: "test; train has #5", 5: "train; test has #4"}
    assert found["empty_outputs"].records == [3]
    assert found["output_is_input"].records == [6]
    assert found["double_templating"].records == [7, 8, 9]
    assert found["double_templating"].notes == {7: "instruction has ### Instruction:",
                                                8: "output has <start_of_turn>", 9: "input has <|user|>"}
    assert found["response_cut"].records == [10] and found["too_long"].records == [10]
    assert found["no_target"].records == []  # the prompt is trained when it is not masked


def test_token_findings_follow_the_max_length_and_masking(problems_file, tiny_tokenizer):
    dataset = data.load(problems_file, empty_outputs=True)
    masked = data_checks.check(dataset, tiny_tokenizer, CheckSettings(style="phi3", max_length=64,
                                                                      mask="prompt"))
    assert findings(masked)["no_target"].records == [10]
    assert masked.lengths.over == 1 and masked.lengths.longest > 64 and 0 < masked.lengths.lost_share < 1
    whole = data_checks.check(dataset, tiny_tokenizer, CheckSettings(style="phi3", max_length=None,
                                                                     mask="prompt"))
    assert [f.key for f in whole.problems()] == ["exact_duplicates", "near_duplicates", "split_leaks",
                                                 "empty_outputs", "output_is_input", "double_templating"]
    assert whole.lengths.over == 0 and whole.lengths.lost_share == 0


def test_the_leak_follows_the_split_seed(problems_file, tiny_tokenizer):
    dataset = data.load(problems_file, empty_outputs=True)
    assert data.split_indices(12, seed=1).test == [9] and data.split_indices(12, seed=8).test == [5]
    both_train = findings(data_checks.check(dataset, tiny_tokenizer, CheckSettings(split_seed=1)))["split_leaks"]
    assert both_train.records == []
    swapped = findings(data_checks.check(dataset, tiny_tokenizer, CheckSettings(split_seed=8)))["split_leaks"]
    assert swapped.records == [4, 5] and swapped.notes == {4: "train; test has #5", 5: "test; train has #4"}


def test_normalising_ignores_case_spaces_and_punctuation():
    assert data_checks.normalise("  What's the  CAPITAL,\n of France?! ") == "whats the capital of france"


def test_the_bundled_dataset_runs_through_the_check(default_tokenizer):
    dataset = data.load(data.BUILTIN)
    report = data_checks.check(dataset, default_tokenizer, CheckSettings(max_length=48, mask="prompt"))
    print("\n".join(data_checks.lines(report)))
    assert report.records == len(dataset) == 1196
    for finding in report.findings:
        assert finding.records == sorted(set(finding.records))
        assert all(0 <= n < len(dataset) for n in finding.records)
    found = findings(report)
    assert not dataset.duplicates and found["exact_duplicates"].count == 0  # the loader saw no repeated prompt
    for n in found["output_is_input"].records:
        assert dataset.records[n].output.strip() == dataset.records[n].input.strip()
    assert found["no_target"].records == found["response_cut"].records  # the same thing when masked
    assert set(found["response_cut"].records) <= set(found["too_long"].records)


def test_command_line_prints_the_findings_and_json(problems_file, tiny_model_dir, capsys):
    options = ["--tokenizer", str(tiny_model_dir), "--style", "phi3", "--max-length", "64"]
    assert cli.main(["data", "check", str(problems_file), *options, "--mask", "prompt"]) == 0
    out = capsys.readouterr().out
    assert "exact duplicates: 1" in out and "records: 1 (same as #0)" in out
    assert "in both train and test: 2" in out and "records: 4 (test; train has #5), 5 (train; test has #4)" in out
    assert "nothing trained: 1" in out and "empty outputs: 1" in out
    assert cli.main(["data", "check", str(problems_file), *options, "--split-seed", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counts = {f["key"]: f["count"] for f in report["findings"]}
    assert report["settings"]["split_seed"] == 1 and counts["split_leaks"] == 0 and counts["no_target"] == 0
    assert counts["double_templating"] == 3
    assert [f["records"] for f in report["findings"] if f["key"] == "too_long"] == [[10]]


def test_command_line_exits_2_only_when_the_file_cannot_be_read(write, tiny_model_dir, capsys):
    broken = write("broken.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c"\n')
    assert cli.main(["data", "check", str(broken), "--tokenizer", str(tiny_model_dir)]) == 2
    assert "error:" in capsys.readouterr().err
    empty = write("empty-output.json", [{"instruction": "a", "output": " "}])
    assert cli.main(["data", "validate", str(empty)]) == 2  # refused for training
    capsys.readouterr()
    assert cli.main(["data", "check", str(empty), "--tokenizer", str(tiny_model_dir)]) == 0  # reported here
    assert "empty outputs: 1" in capsys.readouterr().out
