import json

import pandas as pd
import pytest

from playground import data
from playground.errors import DataError

ALPACA = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Fix the spelling.", "input": "recieve", "output": "receive"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue"},
]


def test_builtin_loads_with_task_fields():
    dataset = data.load("builtin")
    assert len(dataset) >= 1000
    assert dataset.mapping == {"instruction": "instruction", "input": "input", "output": "output"}
    assert all(r.task for r in dataset.records)
    assert any(r.exact for r in dataset.records)


def test_json_array(write):
    dataset = data.load(str(write("d.json", ALPACA)))
    assert [r.output for r in dataset.records] == ["5", "receive", "Blue"]
    assert dataset.records[1].input == "recieve"
    assert dataset.with_input == 1


def test_jsonl(write):
    path = write("d.jsonl", "\n".join(json.dumps(r) for r in ALPACA) + "\n\n")
    assert [r.instruction for r in data.load(str(path)).records] == [r["instruction"] for r in ALPACA]


def test_csv_keeps_empty_input_as_text(write):
    path = write("d.csv", 'instruction,input,output\n"Add 2 and 3.",,5\n"Say hi, politely.",x,"Hello, there"\n')
    records = data.load(str(path)).records
    assert records[0].input == "" and records[0].output == "5"
    assert records[1].instruction == "Say hi, politely." and records[1].output == "Hello, there"


def test_parquet_with_null_input(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"instruction": ["a", "b"], "input": [None, "x"], "output": ["1", "2"]}).to_parquet(path)
    records = data.load(str(path)).records
    assert [(r.input, r.output) for r in records] == [("", "1"), ("x", "2")]


@pytest.mark.parametrize("rows, mapping", [
    ([{"instruction": "i", "context": "c", "response": "r"}], {"instruction": "instruction", "input": "context", "output": "response"}),
    ([{"prompt": "i", "completion": "r"}], {"instruction": "prompt", "output": "completion"}),
    ([{"Question": "i", "Answer": "r"}], {"instruction": "Question", "output": "Answer"}),
])
def test_common_shapes_are_mapped(write, rows, mapping):
    dataset = data.load(str(write("d.json", rows)))
    assert dataset.mapping == mapping
    assert dataset.records[0].instruction == "i" and dataset.records[0].output == "r"


def test_mapping_override(write):
    path = write("d.json", [{"q": "What?", "ctx": "", "a": "That.", "output": "ignored"}])
    record = data.load(str(path), {"instruction": "q", "input": "ctx", "output": "a"}).records[0]
    assert (record.instruction, record.output) == ("What?", "That.")


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        data.load(str(path), **kwargs)
    return str(info.value)


def test_invalid_json_names_line_and_column(write):
    path = write("bad.json", '[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}\n]')
    message = error_of(path)
    assert str(path) in message and "line 3, column 22" in message and "invalid JSON" in message


def test_invalid_jsonl_line(write):
    path = write("bad.jsonl", '{"instruction": "a", "output": "b"}\n{oops}\n')
    assert "line 2" in error_of(path)


def test_record_not_an_object(write):
    message = error_of(write("d.json", [ALPACA[0], ["not", "an", "object"]]))
    assert "record 2" in message and "expected an object" in message and "list" in message


def test_missing_output_names_record_and_field(write):
    message = error_of(write("d.json", [ALPACA[0], {"instruction": "x", "input": ""}, ALPACA[1]]))
    assert "record 2, field 'output': missing" in message


def test_no_instruction_column(write):
    message = error_of(write("d.json", [{"text": "x", "output": "y"}]))
    assert "no column for 'instruction'" in message


def test_non_string_field(write):
    message = error_of(write("d.json", [{"instruction": "x", "output": 5}]))
    assert "record 1, field 'output': must be text, got int" in message


def test_empty_output(write):
    message = error_of(write("d.jsonl", '{"instruction": "x", "output": "  "}\n'))
    assert "line 1, field 'output': is empty" in message


def test_all_problems_are_listed(write):
    message = error_of(write("d.json", [{"instruction": "x", "output": ""}, {"instruction": 3, "output": "y"}]))
    assert "2 problems" in message and "record 1" in message and "record 2" in message


def test_empty_file(write):
    assert "file is empty" in error_of(write("d.json", ""))


def test_non_utf8(write):
    message = error_of(write("d.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "b"}\n'))
    assert "line 2" in message and "not UTF-8" in message


def test_size_limit(write):
    path = write("d.json", ALPACA * 2000)
    assert "over the 0.1 MB limit" in error_of(path, max_mb=0.1)
    assert len(data.load(str(path), max_mb=1)) == 6000


def test_missing_file_and_bad_source():
    assert "no such file" in error_of("/nonexistent/file.json")


def test_duplicates_are_reported_not_fatal(write):
    dataset = data.load(str(write("d.json", [ALPACA[0], ALPACA[1], ALPACA[0]])))
    assert len(dataset) == 3
    assert dataset.duplicates == [(3, 1)]


def test_offline_url_fails_clearly():
    message = error_of("http://127.0.0.1:9/data.json")
    assert "could not download" in message and "local file" in message


def test_splits_are_deterministic_and_book_sized():
    splits = data.split_indices(1100, seed=7)
    assert splits.sizes() == {"train": 935, "validation": 55, "test": 110}  # the book's sizes
    assert splits == data.split_indices(1100, seed=7)
    assert splits != data.split_indices(1100, seed=8)
    assert sorted(splits.train + splits.validation + splits.test) == list(range(1100))


def test_record_limit_names_the_count_and_the_limit(write):
    rows = [{"instruction": f"Say {i}.", "output": str(i)} for i in range(25)]
    for name, content in [("d.json", rows), ("d.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
                          ("d.csv", "instruction,output\n" + "".join(f"Say {i}.,{i}\n" for i in range(25)))]:
        message = error_of(write(name, content), max_records=10)
        assert "holds 25 records, over the limit of 10" in message and "--max-records" in message
    assert len(data.load(str(write("d.json", rows)), max_records=25)) == 25


def test_record_limit_of_the_app_applies_to_every_load(write):
    path = write("d.json", ALPACA * 4)
    data.set_record_limit(5)
    try:
        assert "holds 12 records, over the limit of 5" in error_of(path)
    finally:
        data.set_record_limit(data.DEFAULT_MAX_RECORDS)
    assert len(data.load(str(path))) == 12


def test_json_read_one_record_at_a_time_still_checks_the_whole_text(write):
    assert "line 1, column 39: invalid JSON: Extra data" in error_of(write("d.json", '[{"instruction": "a", "output": "b"}] x'))
    assert "invalid JSON" in error_of(write("d.json", '[{"instruction": "a", "output": "b"}'))
    assert "file holds no records" in error_of(write("d.json", "[ ]"))
    nested = data.load(str(write("d.json", {"data": ALPACA})))
    assert [r.output for r in nested.records] == ["5", "receive", "Blue"]


def test_a_dataset_is_shared_not_copied_by_deepcopy():
    import copy

    dataset = data.load("builtin")
    assert copy.deepcopy(dataset) is dataset  # Gradio deep-copies a State's value per session
