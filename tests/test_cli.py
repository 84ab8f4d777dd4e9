import json
import re
from pathlib import Path

from tests_helpers import run_cli


def test_validate_builtin():
    result = run_cli("data", "validate", "builtin")
    assert result.returncode == 0, result.stderr
    assert "1196 records" in result.stdout
    assert "train 1016, validation 61, test 119" in result.stdout


def test_validate_bad_file_exit_2(write):
    path = write("bad.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 7}\n')
    result = run_cli("data", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert str(path) in result.stderr and "line 2, field 'output'" in result.stderr


def test_prompt_prints_training_text(default_tokenizer):
    result = run_cli("prompt", "builtin", "--index", "0", "--style", "phi3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<|user|>\n") and "<|assistant|>:\n" in result.stdout
    assert result.stdout.rstrip("\n").endswith("<eos>")


def test_batch_json(default_tokenizer):
    result = run_cli("batch", "builtin", "--style", "alpaca", "--batch-size", "3", "--max-length", "50",
                     "--mask", "prompt", "--json")
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
    result = run_cli("batch", "builtin", "--number", "100000")
    assert result.returncode == 2 and "out of range" in result.stderr


def test_a_file_nested_too_deeply_is_an_error_not_a_traceback(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli("data", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: nested too deeply") and "Traceback" not in result.stderr


def test_batch_without_json_prints_a_readable_grid(default_tokenizer):
    result = run_cli("batch", "builtin", "--batch-size", "2", "--max-length", "24", "--mask", "prompt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("sample 1 · record #") and "0 trained targets" in lines[0]
    assert [line.split()[0] for line in lines[1:5]] == ["pos", "input", "target", "kind"]
    assert lines[-2].startswith("batch 2 × 24 ·") and "padding" in lines[-2]
    assert not any(line.startswith("{") for line in lines)  # no JSON dump


def test_train_names_the_store_models_dir_and_turns_preset_choices_off(tiny_model_dir, tmp_path):
    """--mask none and --no-group-by-length override the preset; --out still works, with a warning;
    no progress bars or deprecation notices from transformers."""
    common = ["train", "--model", str(tiny_model_dir), "--preset", "Quick CPU demo", "--max-steps", "1",
              "--batch-size", "2", "--probes", "0", "--eval-every", "0"]
    result = run_cli(*common, "--mask", "none", "--no-group-by-length", "--models-dir", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip().splitlines()[-1])
    settings = json.loads((folder / "config.json").read_text())["settings"]
    assert folder.parent == tmp_path / "a" / "runs"
    assert settings["mask"] == "none" and settings["group_by_length"] is False
    assert "mask_instruction" not in settings
    assert "Loading weights" not in result.stderr and "Warning" not in result.stderr, result.stderr
    old = run_cli(*common, "--out", str(tmp_path / "b"))
    assert old.returncode == 0, old.stderr
    assert "--out is deprecated; use --models-dir" in old.stderr
    old_folder = Path(old.stdout.strip().splitlines()[-1])
    assert old_folder.parent == tmp_path / "b" / "runs"  # --out is still where the run goes
    settings = json.loads((old_folder / "config.json").read_text())["settings"]
    assert settings["mask"] == "prompt"  # the preset's choice
    assert "--out" not in run_cli("train", "--help").stdout


def test_judge_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path):
    from ollama_standin import OllamaStandin
    from playground import judge

    path = tmp_path / "responses.json"
    judge.write_responses(path, [{"instruction": f"Say {i}.", "input": "", "output": str(i),
                                  "model_response": str(i)} for i in range(3)])
    with OllamaStandin(reply=lambda request: "80") as server:
        result = run_cli("judge", "--responses", str(path), "--host", server.url)
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if re.match(r"^\s*\d+% ", line)]
    assert progress and progress[-1].startswith("100%"), result.stderr
    assert "\r" not in result.stderr and "|" not in result.stderr  # no bar redrawn in place


def test_a_file_over_the_record_limit_is_an_error(write):
    path = write("many.jsonl", "".join(json.dumps({"instruction": f"Say {i}.", "output": str(i)}) + "\n"
                                       for i in range(30)))
    result = run_cli("data", "validate", str(path), "--max-records", "20")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: holds 30 records, over the limit of 20")
    assert run_cli("data", "validate", str(path), "--max-records", "30").returncode == 0
