"""Preference pairs from a served model's rewrites (the book's create-preference-data-ollama notebook),
against the Ollama stand-in: the book's prompt, the chosen and rejected sides by politeness, provenance,
the cache, and a server that is down."""

import json
import random

from ollama_standin import OllamaStandin
from playground import data
from playground.prompts import alpaca_instruction
from tests_helpers import free_port, run_cli

LIMIT = 6


def rewrite(request):
    """A served model that does what the prompt asks: a marked politer or ruder copy of the output."""
    prompt = request["messages"][0]["content"]
    output = prompt.split("and correct output `", 1)[1].split("`, slightly rewrite", 1)[0]
    return ("Kindly: " if "more polite." in prompt else "Ugh: ") + output


def test_rewrites_become_pairs_by_politeness_with_the_books_prompt(tmp_path):
    records = data.load("builtin").records[:LIMIT]
    with OllamaStandin(reply=rewrite) as server:
        out = tmp_path / "pairs.json"
        done = run_cli("data", "pairs", "--rewrite", "builtin", "--limit", str(LIMIT), "--host", server.url,
                       "--out", str(out), models_dir=tmp_path)
        assert done.returncode == 0, done.stderr
        asked = [r["messages"][0]["content"] for r in server.requests]
        # a second pass over the same records asks nothing: the replies are cached in the store
        again = run_cli("data", "pairs", "--rewrite", "builtin", "--limit", str(LIMIT), "--host", server.url,
                        "--out", str(tmp_path / "again.json"), models_dir=tmp_path)
        assert again.returncode == 0, again.stderr
        assert len(server.requests) == LIMIT
    draw = random.Random(123)
    politeness = [draw.choice(["polite", "impolite"]) for _ in records]
    assert asked[0] == (f"Given the input `{alpaca_instruction(records[0])}` and correct output `{records[0].output}`, "
                        f"slightly rewrite the output to be more {politeness[0]}.Keep the modification minimal."
                        "Only return return the generated response and nothing else.")
    pairs = json.loads(out.read_text())
    assert len(pairs) == LIMIT and pairs == json.loads((tmp_path / "again.json").read_text())
    for pair, record, how in zip(pairs, records, politeness):
        expected = (f"Kindly: {record.output}", record.output) if how == "polite" else \
            (record.output, f"Ugh: {record.output}")
        assert (pair["chosen"], pair["rejected"]) == expected and pair["output"] == record.output
        assert pair["provenance"]["politeness"] == how and pair["provenance"]["source"] == "rewrite"
    assert data.load(str(out)).is_preference  # the file trains as a preference dataset


def test_a_server_that_is_down_is_named_and_nothing_is_written(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    done = run_cli("data", "pairs", "--rewrite", "builtin", "--limit", "2", "--host", down,
                   "--out", str(tmp_path / "pairs.json"), models_dir=tmp_path)
    assert done.returncode == 2 and "No rewrites: Cannot reach the Ollama server" in done.stderr
    assert not (tmp_path / "pairs.json").exists()
