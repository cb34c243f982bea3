"""The SEFT paper's four directions, one column per finished run of examples/quickstart-baselines.yaml:
`python scripts/directions.py runs/qb-0 runs/qb-1 runs/qb-2` reads each RUN_DIR/report.json and
prints README's "Baselines" table (markdown) with the directions that hold in its last row:
1. the adaptive reviser's [No Revise] share at least NO_AT_BEST at rank 0 and at most NO_AT_WORST
   at rank 6, its [Major Revise] share growing as the rank falls (means of ranks 1-3 and 4-6);
2. its improvement rate on rank 0-1 originals at least every baseline reviser's, and its benefit
   at rank 0 at least 0 where the preliminary reviser's is below 0;
3. SEFT's policy above SFT on chosen, DPO and ORPO, and above internal and external evolution alone;
4. every policy's mean reward below SATURATED."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import fmean

NO_AT_BEST, NO_AT_WORST, SATURATED = 0.5, 0.15, 0.95
BASELINE_REVISERS = ("preliminary", "aligner", "label")


def directions(report: dict) -> tuple[list[str], list[int]]:
    """The table's cells for one run, and the directions that hold."""
    metrics, headline = report["metrics"], report["summaries"]["evaluate"]["headline"]
    revisers = {name: by_critic[headline["critic"]] for name, by_critic in metrics["reviser"].items()}
    adaptive = revisers["adaptive"]
    no, major = ([adaptive[str(k)]["labels"][label] for k in range(7)] for label in ("no", "major"))
    rates = headline["improvement_rate_rank_0_1"]
    benefit, prelim_benefit = adaptive["0"]["mean_benefit"], revisers["preliminary"]["0"]["mean_benefit"]
    reward = headline["policy_reward"]  # the first critic's, as the rates
    seft = reward["external"]
    holds = [
        no[0] >= NO_AT_BEST and no[6] <= NO_AT_WORST and major[0] < fmean(major[1:4]) < fmean(major[4:7]),
        rates["adaptive"] >= max(rates[n] for n in BASELINE_REVISERS) and (prelim_benefit >= 0 or benefit >= 0),
        seft > max(reward[n] for n in ("sft_chosen", "dpo", "orpo", "internal", "external_only")),
        max(reward.values()) < SATURATED,
    ]
    cells = [
        f"{no[0]:.0%} / {no[6]:.0%}",
        " ".join(f"{100 * m:.0f}" for m in major),
        f"{rates['adaptive']:.1%} vs " + " / ".join(f"{100 * rates[n]:.1f}" for n in BASELINE_REVISERS),
        f"{benefit:+.3f} ({prelim_benefit:+.3f})",
        f"{seft:.3f} vs " + " / ".join(f"{reward[n]:.3f}" for n in ("sft_chosen", "dpo", "orpo")),
        f"{seft:.3f} vs {reward['internal']:.3f} / {reward['external_only']:.3f}",
        f"{max(reward.values()):.3f} ({reward['initial']:.3f})",
    ]
    return cells, [d for d, ok in enumerate(holds, 1) if ok]


ROWS = [
    ("1", f"adaptive `[No Revise]` at rank 0 / rank 6 (goal: at least {NO_AT_BEST:.0%} / at most {NO_AT_WORST:.0%})"),
    ("1", "adaptive `[Major Revise]` at ranks 0..6 (goal: grows as quality falls)"),
    ("2", "improvement rate on rank 0-1 originals: adaptive vs preliminary / Aligner / label reviser"),
    ("2", "benefit at rank 0: adaptive (preliminary) (goal: at least 0 where the preliminary's is below 0)"),
    ("3", "mean reward: SEFT vs SFT on chosen / DPO / ORPO"),
    ("3", "SEFT vs internal evolution alone / external alone"),
    ("4", f"highest policy reward (goal: below {SATURATED}; the initial policy's)"),
]


def main(runs: list[Path]) -> None:
    columns = [directions(json.loads((run / "report.json").read_text())) for run in runs]
    print("| direction | measured | " + " | ".join(run.name for run in runs) + " |")
    print("|---|---|" + "---|" * len(runs))
    for i, (direction, what) in enumerate(ROWS):
        print(f"| {direction} | {what} | " + " | ".join(cells[i] for cells, _ in columns) + " |")
    print("| | directions that hold | " + " | ".join(", ".join(map(str, held)) or "none" for _, held in columns) + " |")


if __name__ == "__main__":
    runs = [Path(arg) for arg in sys.argv[1:]]
    if not runs or not all((run / "report.json").is_file() for run in runs):
        sys.exit("usage: python scripts/directions.py RUN_DIR... (finished runs of examples/quickstart-baselines.yaml, "
                 "each with RUN_DIR/report.json)")
    main(runs)
