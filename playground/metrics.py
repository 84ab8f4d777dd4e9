"""Offline reference metrics: compare a model's response with the dataset's reference output.

They need no judge model, so they are always available, but they only measure overlap with one
reference wording: a correct answer phrased differently scores low. Exact match suits tasks with a
single right answer; ROUGE-L (longest common subsequence of words) suits short free text.
"""

from __future__ import annotations

import re

QUOTES = "\"'`“”‘’"


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, and drop surrounding quotes and a trailing period, so
    'Paris.' and '"paris"' compare equal."""
    text = " ".join(text.lower().split())
    text = re.sub(rf"[\s.{QUOTES}]+$", "", text)
    return re.sub(rf"^[\s{QUOTES}]+", "", text)


def exact_match(response: str, reference: str) -> bool:
    return normalize(response) == normalize(reference)


def tokens(text: str) -> list[str]:
    """Lowercased word tokens; punctuation is not a token."""
    return re.findall(r"\w+", text.lower())


def _lcs_length(a: list[str], b: list[str]) -> int:
    # Two rows of the usual dynamic programme: O(len(a) * len(b)) time, O(len(b)) memory.
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(response: str, reference: str) -> float:
    """ROUGE-L F-measure (0..1) over word tokens. An empty side scores 0, as in `rouge-score`."""
    candidate, target = tokens(response), tokens(reference)
    if not candidate or not target:
        return 0.0
    common = _lcs_length(candidate, target)
    if common == 0:
        return 0.0
    precision, recall = common / len(candidate), common / len(target)
    return 2 * precision * recall / (precision + recall)
