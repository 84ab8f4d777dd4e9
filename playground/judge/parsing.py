"""Reading a judge's reply: a score 0–100, or a pairwise verdict; None when there is none."""

from __future__ import annotations

import json
import re
from typing import Any

_SCALE = re.compile(r"\b0\s*(?:-|–|—|to|and)\s*100\b")  # an echo of the scale, not an answer
_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?")
_LABEL = re.compile(r"\b(?:score|rating|rate|grade|give|mark|assign)\w*\b[^\d]{0,30}$", re.IGNORECASE)
_STANDALONE = re.compile(r"^[ \t]*(?:%|points?)?[ \t]*(?:[.,;:!)\]]|\n|$)")
_RANGE_AFTER = re.compile(r"^\s*(?:-|–|—|to|or|and)\s*-?\d")
_RANGE_BEFORE = re.compile(r"(?:\bbetween|\bfrom|\d\s*(?:-|–|—|to|or|and))\s*$", re.IGNORECASE)
_MISSING = object()


def parse_score(text: str) -> int | None:
    """The integer score 0–100 in a judge's reply, or None when there is none or it is ambiguous.

    Lenient about form: "85", "85.", "Score: 85", "85/100", "**85**", "I would score this 85 out
    of 100.", JSON {"score": 85} (or "85"), a leading number followed by an explanation.
    Strict about meaning: out of range, negative, not a whole number, out of another scale
    ("8/10"), a range ("between 70 and 80") or two different candidates give None. Number words
    ("eighty-five") are not read: the prompt asks for digits, and a miss is counted, not hidden.
    """
    if not text or not text.strip():
        return None
    from_json = _json_score(text)
    if from_json is not _MISSING:
        return from_json
    clean = _SCALE.sub(" ", re.sub(r"[*`#]", "", text))
    numbers = list(_NUMBER.finditer(clean))
    if not numbers:
        return None
    lead = numbers[0]
    if not clean[:lead.start()].strip(" \t\n\"'([") and _STANDALONE.match(clean[lead.end():]):
        return _checked(clean, lead)
    labelled = [m for m in numbers if _LABEL.search(clean[max(0, m.start() - 40):m.start()])]
    pool = labelled or numbers
    if len({_value(m) for m in pool}) != 1:
        return None
    return _checked(clean, pool[0])


def _value(match: re.Match[str]) -> tuple[float, float]:
    return float(match.group(1)), float(match.group(2) or 100)


def _checked(text: str, match: re.Match[str]) -> int | None:
    number, scale = _value(match)
    if scale != 100 or not number.is_integer() or not 0 <= number <= 100:
        return None
    if _RANGE_AFTER.match(text[match.end():]) or _RANGE_BEFORE.search(text[:match.start()]):
        return None
    return int(number)


def _json_score(text: str) -> Any:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return _MISSING
    try:
        value = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return _MISSING
    if not isinstance(value, dict):
        return _MISSING
    score = next((v for k, v in value.items() if str(k).lower() == "score"), _MISSING)
    if score is _MISSING:
        return _MISSING
    if isinstance(score, bool) or score is None:
        return None
    if isinstance(score, (int, float)):
        return int(score) if float(score).is_integer() and 0 <= score <= 100 else None
    return parse_score(str(score)) if isinstance(score, str) and "{" not in score else None


_CHOICE_STRONG = re.compile(r"\b(?:response|answer|option)?\s*\b([ab])\b\s+is\s+(?:better|the better)"
                            r"|\b(?:winner|better(?: response| answer)?|verdict|choice)\s*(?:is|:)\s*"
                            r"(?:response |answer )?\b([ab])\b|\[\[([ab])\]\]", re.IGNORECASE)
_CHOICE_LEAD = re.compile(r"^[\s\"'(\[]*(?:(?:response|answer|option)\s+)?([ab])[\s\"')\]]*(?:[.,:;!\n]|$)",
                          re.IGNORECASE)
_CHOICE_TIE = re.compile(r"\b(?:tie|tied|draw|equal(?:ly)?(?: good)?)\b", re.IGNORECASE)


def parse_choice(text: str) -> str | None:
    """"A", "B" or "tie" from a pairwise reply, or None when it names none or several."""
    clean = re.sub(r"[*`#]", "", text or "").strip()
    if not clean:
        return None
    found = {(m.group(1) or m.group(2) or m.group(3)).upper() for m in _CHOICE_STRONG.finditer(clean)}
    if not found and (lead := _CHOICE_LEAD.match(clean)):
        found = {lead.group(1).upper()}
    if not found and _CHOICE_TIE.search(clean):
        found = {"tie"}
    return found.pop() if len(found) == 1 else None


def parse_book_score(text: str) -> int | None:
    """The book's reading (`int(reply)`): a reply that is exactly a whole number (in 0–100), else None."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if 0 <= value <= 100 else None
