"""Small sums for a small real model: "What is 4 + 7 + 2? Answer with the number only.", two or
three terms of 1..9, the sum in each row's metadata (`{"answer": "13"}`) for the rule critic
`seft.tasks.answers:number`. SmolLM2-135M-Instruct answers about half of them right (greedy) and
often wordily, so there is room to improve, and a reviser can see a wrong sum in the answer.

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
        question = f"What is {' + '.join(map(str, terms))}? Answer with the number only."
        out.append({"id": f"s{seed}-{i}", "prompt": question, "metadata": {"answer": str(sum(terms))}})
    return out


def main(out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    for name, (n, seed) in SIZES.items():
        (Path(out) / name).write_text("".join(json.dumps(r) + "\n" for r in rows(n, seed)))


if __name__ == "__main__":
    main(sys.argv[1])
