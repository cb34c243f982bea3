"""Rule critics for data that carries its answer, as verifiable tasks do (GSM8K, reasoning-gym):
a record's `metadata: {"answer": ...}` reaches them as the keyword `answer`.

A response's final answer is the text after its last `####` (GSM8K's mark) or `answer:`, else its
last non-empty line; `number` takes the last number in the response instead, and `mentions`
looks for the answer anywhere in it."""

from __future__ import annotations

import re
import unicodedata

from seft.tasks import position_score

_MARK = re.compile(r"(?:####|answer\s*:)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def final_answer(response: str) -> str:
    parts = _MARK.split(response)
    if len(parts) > 1:
        return parts[-1].strip()
    lines = [line.strip() for line in response.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _words(text: str) -> list[str]:
    return text.lower().strip(" .").split()


def exact(prompt: list[dict], response: str, answer) -> float:
    """1.0 when the final answer is `answer` (case and spacing aside), else 0.0."""
    return float(_words(final_answer(response)) == _words(str(answer)))


def words(prompt: list[dict], response: str, answer) -> float:
    """Partial credit: the share of the answer's words in their right place (graded rewards rank
    sampled answers more finely than right/wrong)."""
    return position_score(_words(str(answer)), _words(final_answer(response)))


def number(prompt: list[dict], response: str, answer) -> float:
    """1.0 when the last number in the response (after `####` or `answer:` when it has one) is
    `answer`; a near miss earns up to 0.5 (half of 1 - relative error); no number earns 0."""
    marked = _MARK.split(response)
    found = _NUMBER.findall((marked[-1] if len(marked) > 1 else response).replace(",", ""))
    if not found:
        return 0.0
    got, want = float(found[-1]), float(answer)
    if got == want:
        return 1.0
    return 0.5 * max(0.0, 1.0 - abs(got - want) / max(abs(want), 1.0))


def _plain(text: str) -> str:
    """Lower case, accents, apostrophes and punctuation gone, one space between words ("Bogotá," ->
    "bogota", "Sana'a" -> "sanaa")."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def mentions(prompt: list[dict], response: str, answer) -> float:
    """1.0 when the response names `answer` as whole words (case, accents and punctuation
    aside), else 0.0: for short factual answers stated in a sentence ("The capital is Lima.")."""
    return float(f" {_plain(str(answer))} " in f" {_plain(response)} ")
