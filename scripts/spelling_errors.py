"""Where each policy's held-out answers go wrong on the spelling task: `python scripts/spelling_errors.py
runs/NAME` reads a finished run's evaluate/samples.jsonl and prepare/heldout.jsonl and prints, per
policy, the share of all its answers' word positions that are right, typos, a prompt's misspelling
copied, or another word (seft.tasks.spelling.error_kinds). The shares pool every position; the
critic's reward is the mean of each answer's share right, so the two differ a little."""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from seft.tasks import spelling

KINDS = ("right", "typo", "misspelling", "other word")


def main(run: Path) -> None:
    prompts = {row["id"]: row["prompt"] for row in map(json.loads, (run / "prepare" / "heldout.jsonl").open())}
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in map(json.loads, (run / "evaluate" / "samples.jsonl").open()):
        if "policy" in row:
            counts[row["policy"]] += spelling.error_kinds(prompts[row["id"]], row["answer"])
    print("| policy | " + " | ".join(KINDS) + " |\n|---|" + "---|" * len(KINDS))
    for policy, c in counts.items():
        print(f"| {policy} | " + " | ".join(f"{c[k] / c.total():.1%}" for k in KINDS) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "evaluate" / "samples.jsonl").is_file():
        sys.exit("usage: python scripts/spelling_errors.py RUN_DIR (a finished run of the spelling task, "
                 "with RUN_DIR/evaluate/samples.jsonl)")
    main(Path(sys.argv[1]))
