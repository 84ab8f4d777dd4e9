"""Checks on the bundled instruction dataset (playground/datasets/instructions.json).

The file is produced by scripts/make_dataset.py; these tests check its shape,
balance, determinism, and recompute the answers of several task families from
the text of the records.
"""

import json
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / "playground" / "datasets" / "instructions.json"
GENERATOR = ROOT / "scripts" / "make_dataset.py"
KEYS = ["instruction", "input", "output", "task", "exact"]


@pytest.fixture(scope="module")
def records():
    return json.loads(DATASET.read_text(encoding="utf-8"))


def by_task(records, task):
    chosen = [r for r in records if r["task"] == task]
    assert chosen, f"no records for task {task!r}"
    return chosen


def text_of(r):
    return f"{r['instruction']} {r['input']}"


# --------------------------------------------------------------------------- shape


def test_record_count(records):
    assert isinstance(records, list)
    assert len(records) >= 1000


def test_keys_and_types(records):
    for r in records:
        assert list(r) == KEYS
        assert isinstance(r["instruction"], str) and r["instruction"].strip()
        assert isinstance(r["input"], str)
        assert isinstance(r["output"], str) and r["output"].strip()
        assert isinstance(r["task"], str) and re.fullmatch(r"[a-z]+(_[a-z]+)*", r["task"])
        assert isinstance(r["exact"], bool)


def test_input_fraction(records):
    fraction = sum(1 for r in records if r["input"]) / len(records)
    assert 0.28 <= fraction <= 0.40


def test_family_spread(records):
    counts = Counter(r["task"] for r in records)
    assert len(counts) >= 20
    assert max(counts.values()) <= 0.12 * len(records)


def test_exact_flag_is_per_family(records):
    flags = {}
    for r in records:
        flags.setdefault(r["task"], set()).add(r["exact"])
    assert all(len(v) == 1 for v in flags.values())
    assert any(v == {False} for v in flags.values())


def test_no_duplicate_prompts(records):
    keys = [(r["instruction"], r["input"]) for r in records]
    assert len(keys) == len(set(keys))


def test_generator_is_deterministic(tmp_path):
    out = tmp_path / "instructions.json"
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out)], check=True,
                   cwd=ROOT, capture_output=True)
    assert out.read_bytes() == DATASET.read_bytes()


# --------------------------------------------------------------------------- correctness


def test_arithmetic(records):
    for r in by_task(records, "arithmetic"):
        text = text_of(r)
        a, b = (int(x) for x in re.findall(r"\d+", text))
        if text.startswith("Subtract"):  # "Subtract b from a."
            expected = b - a
        elif re.search(r"plus|sum|Add|\+", text):
            expected = a + b
        elif re.search(r"minus| - ", text):
            expected = a - b
        elif re.search(r"times|product|Multiply|×", text):
            expected = a * b
        elif re.search(r"divided|Divide|÷", text):
            assert a % b == 0
            expected = a // b
        else:
            pytest.fail(f"unparsed arithmetic record: {text}")
        assert r["output"] == str(expected), text


def test_temperature_conversion(records):
    checked = 0
    for r in by_task(records, "unit_conversion"):
        m = re.search(r"(-?\d+) degrees (Celsius|Fahrenheit)", r["instruction"])
        if not m:
            continue
        value = int(m.group(1))
        if m.group(2) == "Celsius":
            expected = f"{value * 9 / 5 + 32:g} degrees Fahrenheit"
        else:
            expected = f"{(value - 32) * 5 / 9:g} degrees Celsius"
        assert r["output"] == expected, r
        checked += 1
    assert checked


def test_sort_numbers(records):
    for r in by_task(records, "sort_numbers"):
        source = r["input"] or r["instruction"].split(":", 1)[1].rstrip(".")
        given = [int(x) for x in source.split(",")]
        result = [int(x) for x in r["output"].split(", ")]
        descending = "descending" in r["instruction"] or "largest to smallest" in r["instruction"]
        assert result == sorted(given, reverse=descending), r


def test_sort_words(records):
    for r in by_task(records, "sort_words"):
        source = r["input"] or r["instruction"].split(":", 1)[1].rstrip(".")
        given = [w.strip() for w in source.split(",")]
        assert r["output"].split(", ") == sorted(given), r


def test_case_conversion(records):
    for r in by_task(records, "case_conversion"):
        instruction, given = r["instruction"].lower(), r["input"]
        if "uppercase" in instruction or "capital letters" in instruction:
            assert r["output"] == given.upper()
        elif "lowercase" in instruction:
            assert r["output"] == given.lower()
        else:
            assert r["output"].lower() == given.lower()
            assert all(w[0].isupper() for w in r["output"].split())


def test_count_words(records):
    for r in by_task(records, "count_words"):
        sentence = r["input"] or re.search(r'"(.+)"', r["instruction"]).group(1)
        assert r["output"] == str(len(sentence.split())), r


def test_count_letters(records):
    for r in by_task(records, "count_letters"):
        quoted = re.findall(r"'([a-z]+)'", r["instruction"])
        if len(quoted) == 2:
            letter, word = quoted
            assert r["output"] == str(word.count(letter)), r
        else:
            (word,) = quoted
            assert r["output"] == str(len(word)), r


def test_reverse_word(records):
    for r in by_task(records, "reverse_word"):
        (word,) = re.findall(r"'([a-z]+)'", r["instruction"])
        assert r["output"] == word[::-1]


def _words(n):
    ones = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen").split()
    tens = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
    if n == 100:
        return "one hundred"
    if n < 20:
        return ones[n]
    return tens[n // 10] + ("-" + ones[n % 10] if n % 10 else "")


def test_number_words(records):
    table = {_words(n): n for n in range(101)}
    for r in by_task(records, "number_words"):
        digits = re.search(r"\b\d+\b", r["instruction"])
        if digits:
            assert r["output"] == _words(int(digits.group())), r
        else:
            words = re.search(r"'([a-z -]+)'", r["instruction"]).group(1)
            assert r["output"] == str(table[words]), r


def test_even_odd(records):
    for r in by_task(records, "even_odd"):
        n = int(re.search(r"\d+", r["instruction"]).group())
        parity = "Even" if n % 2 == 0 else "Odd"
        if "yes or no" in r["instruction"]:
            asked = "Even" if " an even " in r["instruction"] else "Odd"
            assert r["output"] == ("Yes" if asked == parity else "No"), r
        else:
            assert r["output"] == parity, r


def test_comparison(records):
    for r in by_task(records, "comparison"):
        a, b = (Decimal(x) for x in re.findall(r"\d+(?:\.\d+)?", r["instruction"]))
        assert a != b
        want_larger = re.search(r"larger|greater", r["instruction"]) is not None
        assert Decimal(r["output"]) == (max(a, b) if want_larger else min(a, b)), r


def test_number_sequence(records):
    for r in by_task(records, "number_sequence"):
        source = r["input"] or r["instruction"]
        terms = [int(x) for x in re.findall(r"-?\d+", source)]
        assert len(terms) == 4
        if terms[1] - terms[0] == terms[2] - terms[1] == terms[3] - terms[2]:
            expected = terms[3] + terms[1] - terms[0]
        else:
            assert terms[1] * terms[1] == terms[0] * terms[2]
            expected = terms[3] * terms[1] // terms[0]
        assert r["output"] == str(expected), r


def test_extraction_answers_appear_in_text(records):
    for r in by_task(records, "extraction"):
        assert r["input"] and r["output"] in r["input"]


def test_fixes_change_the_input(records):
    for task in ("spelling_fix", "grammar_fix", "passive_voice", "formal_rewrite"):
        for r in by_task(records, task):
            if r["input"]:
                assert r["output"] != r["input"], r
