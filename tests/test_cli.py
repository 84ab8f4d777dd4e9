import json
import subprocess
import sys

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return subprocess.run([sys.executable, "-m", "playground", *args], cwd=ROOT, capture_output=True, text=True)


def test_validate_builtin():
    result = run("data", "validate", "builtin")
    assert result.returncode == 0, result.stderr
    assert "1196 records" in result.stdout
    assert "train 1016, validation 61, test 119" in result.stdout


def test_validate_bad_file_exit_2(write):
    path = write("bad.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 7}\n')
    result = run("data", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert str(path) in result.stderr and "line 2, field 'output'" in result.stderr


def test_prompt_prints_training_text(default_tokenizer):
    result = run("prompt", "builtin", "--index", "0", "--style", "phi3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<|user|>\n") and "<|assistant|>:\n" in result.stdout
    assert result.stdout.rstrip("\n").endswith("<eos>")


def test_batch_json(default_tokenizer):
    result = run("batch", "builtin", "--style", "alpaca", "--batch-size", "3", "--max-length", "50",
                 "--mask-instruction", "--json")
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)
    assert len(batch["rows"]) == 3
    for row in batch["rows"]:
        assert len(row["input_ids"]) == len(row["target_ids"]) == len(row["tokens"]) == len(row["kind"]) == batch["width"] <= 50
        for position, kind in enumerate(row["kind"]):
            target = row["target_ids"][position]
            assert (target == -100) == (kind in ("pad", "prompt_masked"))
            if target != -100 and position + 1 < len(row["input_ids"]) and row["kind"][position + 1] != "pad":
                assert target == row["input_ids"][position + 1]  # targets are inputs shifted by one
    assert "prompt" not in {k for row in batch["rows"] for k in row["kind"]}  # all prompt targets masked


def test_batch_out_of_range():
    result = run("batch", "builtin", "--number", "100000")
    assert result.returncode == 2 and "out of range" in result.stderr


def test_a_file_nested_too_deeply_is_an_error_not_a_traceback(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = run("data", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: nested too deeply") and "Traceback" not in result.stderr
