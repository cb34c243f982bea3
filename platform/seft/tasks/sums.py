"""Small sums for a small real model: "What is 4 + 7 + 2?", two or three terms of 1..9, the sum
in each row's metadata (`{"answer": "13"}`) for the rule critic `seft.tasks.answers:number` (the
last number of the answer). SmolLM2-135M-Instruct mostly starts a long explanation that 24 new
tokens cut off before the sum (greedy: mean reward 0.28, 9% right); when it writes the sum out
("4 + 7 + 2 = 13") it is often right. That is what SEFT can teach it. Asked for "the number
only", it answers the first term instead (measured: a policy trained on such answers fell from
0.44 to 0.28).

`python -m seft.tasks.sums DIR` writes the real-model example's data: questions.jsonl (ranked by
the rank stage), prompts.jsonl (for evolution), one seed each so they share no row by chance."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SIZES = {"questions.jsonl": (240, 1), "prompts.jsonl": (160, 2)}  # rows, seed


def rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        terms = [rng.randint(1, 9) for _ in range(rng.choice((2, 3)))]
        question = f"What is {' + '.join(map(str, terms))}?"
        out.append({"id": f"s{seed}-{i}", "prompt": question, "metadata": {"answer": str(sum(terms))}})
    return out


def main(out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    for name, (n, seed) in SIZES.items():
        (Path(out) / name).write_text("".join(json.dumps(r) + "\n" for r in rows(n, seed)))


if __name__ == "__main__":
    main(sys.argv[1])
