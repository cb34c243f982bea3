"""Sort a short list of numbers: a task with graded, verifiable rewards.

Rank k (0..6) of a prompt is the sorted answer with k random corruptions (an adjacent swap or
a substituted number), so quality falls with rank as in Nectar. score() is the rule critic:
the share of positions right, over the longer of answer and response."""

from __future__ import annotations

import random
import re

from seft.tasks import position_feedback, position_score

INSTRUCTION = "Sort ascending :"
MAX_VALUE = 99
_NUMBER = re.compile(r"^\d+$")


def make_prompt(rng: random.Random, min_len: int = 4, max_len: int = 7) -> list[int]:
    return [rng.randint(0, MAX_VALUE) for _ in range(rng.randint(min_len, max_len))]


def prompt_messages(numbers: list[int]) -> list[dict]:
    return [{"role": "user", "content": f"{INSTRUCTION} {' '.join(map(str, numbers))}"}]


def corrupt(answer: list[int], k: int, rng: random.Random) -> list[int]:
    out = list(answer)
    for _ in range(k):
        i = rng.randrange(len(out))
        if rng.random() < 0.5 and len(out) > 1:
            j = i + 1 if i + 1 < len(out) else i - 1
            out[i], out[j] = out[j], out[i]
        else:
            out[i] = rng.randint(0, MAX_VALUE)
    return out


def ranked_responses(numbers: list[int], rng: random.Random) -> list[dict]:
    answer = sorted(numbers)
    return [{"rank": k, "content": " ".join(map(str, corrupt(answer, k, rng)))} for k in range(7)]


def _numbers(prompt: list[dict]) -> list[int]:
    text = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
    _, _, tail = text.partition(INSTRUCTION)
    return [int(t) for t in tail.split()]


def _tokens(response: str) -> list[str]:
    return [str(int(t)) if _NUMBER.match(t) else t for t in response.split()]  # "07" is 7


def score(prompt: list[dict], response: str) -> float:
    """The rule critic: fraction of positions that match the sorted answer."""
    return position_score([str(n) for n in sorted(_numbers(prompt))], _tokens(response))


def feedback(prompt: list[dict], response: str) -> str:
    """A teacher's natural-language feedback (for SELF's meta-skill corpus): "correct", or which
    positions (from 1) are wrong and whether the answer is too short or too long."""
    return position_feedback([str(n) for n in sorted(_numbers(prompt))], _tokens(response))


def corpus_words() -> list[str]:
    """Every word the task's prompts and responses can use (for a word-level tokenizer)."""
    return [str(n) for n in range(MAX_VALUE + 1)] + INSTRUCTION.split()
