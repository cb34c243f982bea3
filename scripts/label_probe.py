"""Whether a spelling run's adaptive reviser has learnt its label, as soon as adapt is done (before
the baselines and evaluate): `python scripts/label_probe.py runs/NAME [--prompts 200]` makes seven
answers, ranks 0..6, for each held-out prompt the way the bootstrap makes them
(seft.tasks.spelling.ranked_responses), has runs/NAME/adapt/reviser revise them greedily
in-process, and prints per rank its label shares and the share of its outputs that are right."""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from seft.tasks import spelling  # noqa: E402
from seft_services.backends.transformers_lm import CausalLM, TransformersReviser  # noqa: E402
from seft_services.protocol import SamplingParams  # noqa: E402


def probe(reviser, prompts: list[list[dict]], seed: int = 0) -> dict[int, tuple[Counter, float]]:
    """Per rank: the reviser's labels (Counter of short names) and the share of its outputs right."""
    rng = random.Random(seed)
    by_rank: dict[int, list] = {k: [] for k in range(7)}
    for prompt in prompts:
        words = prompt[-1]["content"].partition(spelling.INSTRUCTION)[2].split()
        for answer in spelling.ranked_responses(words, rng):
            by_rank[answer["rank"]].append((prompt, answer["content"]))
    params, out = SamplingParams(max_new_tokens=16, temperature=0.0), {}
    for rank, items in by_rank.items():
        revisions = [r for i in range(0, len(items), 64) for r in reviser.revise(items[i:i + 64], params)]
        right = sum(spelling.score(p, r.text) == 1.0 for (p, _), r in zip(items, revisions))
        out[rank] = (Counter(r.label.short for r in revisions if r.label), right / len(items))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--prompts", type=int, default=200)
    args = parser.parse_args()
    heldout = [json.loads(line) for line in (args.run / "prepare" / "heldout.jsonl").open()][:args.prompts]
    reviser = TransformersReviser(CausalLM(str(args.run / "adapt" / "reviser")))
    print("rank  major  minor  no     right after")
    for rank, (labels, right) in probe(reviser, [row["prompt"] for row in heldout]).items():
        shares = "  ".join(f"{labels[name] / len(heldout):5.0%}" for name in ("major", "minor", "no"))
        print(f"{rank:>4}  {shares}  {right:5.0%}")


if __name__ == "__main__":
    main()
