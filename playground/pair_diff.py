"""A preference pair's two responses compared word by word (`difflib` on whitespace-separated words).

Each side comes back as segments of its own text, in order, each marked changed (its words are not
in the other side at that place) or not; joined, a side's segments give its text back unchanged.
A changed segment holds whole words and the spaces between them, never leading or trailing spaces.
The Dataset tab colours the changed segments; `data validate` summarises the counts.
"""

from __future__ import annotations

import difflib
import re
import statistics
from dataclasses import dataclass
from typing import Sequence

WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class PairDiff:
    chosen: list[tuple[str, bool]]    # (text, changed) segments of the chosen response
    rejected: list[tuple[str, bool]]  # and of the rejected one
    only_chosen: int    # words of the chosen response not matched in the rejected one
    only_rejected: int  # words of the rejected response not matched in the chosen one
    shared: int         # words matched on both sides

    def summary(self) -> str:
        """The counts in words: "2 words only in chosen, 1 only in rejected, 7 shared"."""
        return (f"{self.only_chosen} word{'s' if self.only_chosen != 1 else ''} only in chosen, "
                f"{self.only_rejected} only in rejected, {self.shared} shared")


def word_diff(chosen: str, rejected: str) -> PairDiff:
    """The two responses' words matched by `difflib.SequenceMatcher`; the rest is marked changed."""
    chosen_words, rejected_words = WORD.findall(chosen), WORD.findall(rejected)
    matcher = difflib.SequenceMatcher(None, chosen_words, rejected_words, autojunk=False)
    chosen_changed, rejected_changed = [True] * len(chosen_words), [True] * len(rejected_words)
    shared = 0
    for start_chosen, start_rejected, size in matcher.get_matching_blocks():
        chosen_changed[start_chosen:start_chosen + size] = [False] * size
        rejected_changed[start_rejected:start_rejected + size] = [False] * size
        shared += size
    return PairDiff(segments(chosen, chosen_changed), segments(rejected, rejected_changed),
                    sum(chosen_changed), sum(rejected_changed), shared)


def segments(text: str, changed: Sequence[bool]) -> list[tuple[str, bool]]:
    """`text` cut into runs of changed and unchanged words (`changed`: one flag per word); the space
    between two changed words belongs to their run, any other space to the unchanged text."""
    gaps = WORD.split(text)  # the space before each word, then the text's trailing space
    out: list[tuple[str, bool]] = []

    def add(part: str, flag: bool) -> None:
        if part and out and out[-1][1] == flag:
            out[-1] = (out[-1][0] + part, flag)
        elif part:
            out.append((part, flag))

    for number, word in enumerate(WORD.findall(text)):
        add(gaps[number], number > 0 and changed[number - 1] and changed[number])
        add(word, changed[number])
    add(gaps[-1], False)
    return out


def changed_text(parts: Sequence[tuple[str, bool]]) -> list[str]:
    """The changed segments of one side, in order."""
    return [text for text, changed in parts if changed]


def typical(diffs: Sequence[PairDiff]) -> str:
    """The median counts of several pairs' diffs, in words."""
    if not diffs:
        return "no pairs"
    median = {name: statistics.median(getattr(d, name) for d in diffs) for name in ("only_chosen", "only_rejected",
                                                                                     "shared")}
    return (f"words only in chosen, median {median['only_chosen']:g}; only in rejected, median "
            f"{median['only_rejected']:g}; shared, median {median['shared']:g}")
