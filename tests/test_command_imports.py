"""Commands on data start without torch: only the command asked for is imported, and nothing the
data commands import loads torch (a Hugging Face tokenizer's own library may)."""

import json
import subprocess
import sys

from test_book_files import book_gpt2_folder  # noqa: F401 (a fixture: GPT-2's files by the book's names)
from tests_helpers import ROOT

# Runs `cli.main(ARGS)` in a fresh interpreter, noting the call stack at the first request for each
# watched module (the finder finds nothing itself: the import goes on as usual), and writes the
# stacks, as (file, function) from the outermost frame, to the file named first in ARGS.
WATCHING = """
import json, sys, traceback
first = {}

class FirstRequest:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "transformers") and name not in first:
            first[name] = [(f.filename, f.name) for f in traceback.extract_stack()[:-1]
                           if not f.filename.startswith("<frozen")]
        return None

sys.meta_path.insert(0, FirstRequest())
from playground import cli
code = cli.main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump({"modules": sorted(sys.modules), "first": first}, out)
sys.exit(code)
"""


def run_watching(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m playground ARGS`, as `cli.main`, with the modules it loaded and who first asked for
    torch and transformers."""
    record = tmp_path / "imports.json"
    result = subprocess.run([sys.executable, "-c", WATCHING, str(record), *args], cwd=ROOT, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    return result, json.loads(record.read_text()) if record.exists() else {}


def test_data_validate_imports_neither_torch_nor_transformers(tmp_path):
    result, seen = run_watching(tmp_path, "data", "validate", "builtin")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == ("builtin (instructions.json): 1196 records, 415 with an input\n"
                             "splits (shuffled): train 1016, validation 61, test 119\n")
    assert seen["first"] == {}  # neither was even asked for
    assert "playground.commands.data" in seen["modules"]
    assert "playground.commands.train" not in seen["modules"] and "playground.export" not in seen["modules"]


SMALL = [{"instruction": "Say hi.", "input": "", "output": "hi"},
         {"instruction": "Say hi.", "input": "", "output": "hi"},
         {"instruction": "Copy it.", "input": "same", "output": "same"},
         {"instruction": "Say nothing.", "input": "", "output": " "}]


def assert_small_findings(path, stdout: str) -> None:
    """What `data check --mask prompt` prints for SMALL."""
    lines = stdout.splitlines()
    assert lines[:2] == [f"{path}:", "4 records · style alpaca · max length 256 · masking prompt · split seed 123, "
                                     "shuffled"]
    assert ("exact duplicates: 1 · the same instruction, input and output as an earlier record: trained on twice "
            "as often") in lines and "  records: 1 (same as #0)" in lines
    assert any(line.startswith("empty outputs: 1 · ") for line in lines)
    assert any(line.startswith("output equals the input: 1 · ") for line in lines)


def test_data_check_with_the_books_tokenizer_imports_neither_torch_nor_transformers(write, book_gpt2_folder,
                                                                                     tmp_path):
    path = write("small.json", SMALL)
    result, seen = run_watching(tmp_path, "data", "check", str(path), "--tokenizer", str(book_gpt2_folder),
                                "--mask", "prompt")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_small_findings(path, result.stdout)
    assert seen["first"] == {} and "tiktoken" in seen["modules"]


def test_data_check_leaves_torch_to_the_tokenizers_library(write, tiny_model_dir, tmp_path):
    path = write("small.json", SMALL)
    result, seen = run_watching(tmp_path, "data", "check", str(path), "--tokenizer", str(tiny_model_dir),
                                "--mask", "prompt")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_small_findings(path, result.stdout)
    # transformers is first asked for inside store.load_tokenizer, when the tokenizer is loaded ...
    file, function = seen["first"]["transformers"][-1]
    assert file.endswith("playground/store.py") and function == "load_tokenizer"
    # ... and torch by transformers itself, never by a playground module as it is imported
    file, _ = seen["first"]["torch"][-1]
    assert "/transformers/" in file
    assert not [frame for frame in seen["first"]["torch"] if "/playground/" in frame[0] and frame[1] == "<module>"]
