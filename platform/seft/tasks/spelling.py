"""Fix the spelling of a short sentence: a task whose flaws a tiny model can see.

The prompt is a sentence of 6-8 words, about half of them misspelled (a misspelling doubles a
word's 2nd letter); the answer is the sentence spelled right. Rank k (0..6) of a prompt is the
answer with k of its words mistyped (a typo swaps a word's 2nd and 3rd letters), and any of the
seven, the best included, has one more typo with probability EXTRA_TYPO: quality falls with rank
as in Nectar, and rank 0 is the best of seven answers, not always a perfect one. score() is the
rule critic: the share of positions right, over the longer of answer and response.

Beside the sorting task it answers a different question. There, telling a sorted list from one
with a swap needs comparisons a 0.5M-parameter reviser does not learn (README "Baselines"); here a
flaw is a mistyped word, visible on its own: a typo never occurs in a prompt, so "does the answer
need revising" can be read off the answer's words alone. (With the prompt's misspellings the same
words as the answers' typos, a reviser must also tell where a word stands; it then learnt the
label late or, on some CPUs, not at all.)"""

from __future__ import annotations

import random
from collections import Counter
from itertools import zip_longest

from seft.tasks import position_feedback, position_score

INSTRUCTION = "Fix spelling :"
WORDS = ("about black bread chair cloud dance dream earth eagle field flame grape green heart house "
         "juice knife lemon light money mouse night north ocean paper plant quiet river sound stone "
         "table train uncle voice water zebra").split()


def typo(word: str) -> str:
    return word[0] + word[2] + word[1] + word[3:]


def misspell(word: str) -> str:
    """How a prompt misspells a word: its 2nd letter doubled."""
    return word[0] + word[1] + word[1:]


TYPOS = {w: typo(w) for w in WORDS}
MISSPELLED = {w: misspell(w) for w in WORDS}
CORRECT = {t: w for w, t in TYPOS.items()} | {m: w for w, m in MISSPELLED.items()}
TYPO_WORDS, MISSPELLED_WORDS = frozenset(TYPOS.values()), frozenset(MISSPELLED.values())
EXTRA_TYPO = 1 / 5
assert len(TYPO_WORDS | MISSPELLED_WORDS | set(WORDS)) == 3 * len(WORDS), \
    "typos, misspellings and words must all differ"


def make_prompt(rng: random.Random, min_len: int = 6, max_len: int = 8) -> list[str]:
    words = [rng.choice(WORDS) for _ in range(rng.randint(min_len, max_len))]
    return [misspell(w) if rng.random() < 0.5 else w for w in words]


def prompt_messages(words: list[str]) -> list[dict]:
    return [{"role": "user", "content": f"{INSTRUCTION} {' '.join(words)}"}]


def ranked_responses(words: list[str], rng: random.Random) -> list[dict]:
    answer = [CORRECT.get(w, w) for w in words]
    out = []
    for k in range(7):
        response = list(answer)
        for i in rng.sample(range(len(answer)), min(len(answer), k + (rng.random() < EXTRA_TYPO))):
            response[i] = typo(response[i])
        out.append({"rank": k, "content": " ".join(response)})
    return out


def answer_words(prompt: list[dict]) -> list[str]:
    """The prompt's sentence spelled right: what score() compares a response with."""
    text = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
    _, _, tail = text.partition(INSTRUCTION)
    return [CORRECT.get(w, w) for w in tail.split()]


def score(prompt: list[dict], response: str) -> float:
    """The rule critic: fraction of positions that match the correctly spelled sentence."""
    return position_score(answer_words(prompt), response.split())


def error_kinds(prompt: list[dict], response: str) -> Counter:
    """What each word position of a response is, over the longer of answer and response as score()
    counts them: "right", "typo" (an answer's flaw), "misspelling" (the prompt's, copied) or
    "other word" (a word out of place, a missing one, or any other token)."""
    answer, said = answer_words(prompt), response.split()
    kinds = Counter()
    for right, word in zip_longest(answer, said):
        if word == right:
            kinds["right"] += 1
        elif right is not None and word in TYPO_WORDS:
            kinds["typo"] += 1
        elif right is not None and word in MISSPELLED_WORDS:
            kinds["misspelling"] += 1
        else:
            kinds["other word"] += 1
    return kinds


def feedback(prompt: list[dict], response: str) -> str:
    """A teacher's feedback (for SELF's meta-skill corpus), like the sorting task's."""
    return position_feedback(answer_words(prompt), response.split())


def corpus_words() -> list[str]:
    """Every word the task's prompts and responses can use (for a word-level tokenizer)."""
    return WORDS + list(TYPOS.values()) + list(MISSPELLED.values()) + INSTRUCTION.split()
