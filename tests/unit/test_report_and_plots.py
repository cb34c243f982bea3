"""report.md and its plots from a run's report.json (built here with the real metric functions)."""

from __future__ import annotations

import json
import random

import pytest

from seft.metrics import reviser_by_rank
from seft.report import compare_table, write_report

from helpers import has_ink


def fake_run(tmp_path, name="demo", shift=0.0):
    rng = random.Random(0)
    samples, metrics = [], {"reviser": {}, "policy": {}}
    for reviser, labels in (("preliminary", False), ("adaptive", True)):
        rows = []
        for rank in range(7):
            for _ in range(20):
                before = 1 - rank / 7 + rng.uniform(-0.05, 0.05)
                keep = labels and rank == 0 and rng.random() < 0.7
                after = before if keep else min(1.0, before + rng.uniform(-0.1, 0.4) + shift)
                label = ("no" if keep else rng.choice(["major", "minor"])) if labels else None
                rows.append({"rank": rank, "reward_original": before, "reward_revised": after,
                             "revised": not keep, "label": label})
        metrics["reviser"][reviser] = {"rule": reviser_by_rank(rows)}
        samples += [{"reviser": reviser, "critic": "rule", **r} for r in rows]
    metrics["reviser_pairwise"] = {"rule": {"preliminary vs adaptive": {"n": 140, "wins": 50, "ties": 40,
                                                                         "losses": 50, "win_rate": 0.5}}}
    metrics["policy"] = {"initial": {"rule": 0.5}, "dpo": {"rule": 0.6}, "internal": {"rule": 0.7 + shift},
                         "external": {"rule": 0.8}}
    metrics["policy_vs_reference"] = {p: {"rule": {"n": 10, "wins": 0, "ties": i, "losses": 10 - i,
                                                   "win_rate": i / 20}} for i, p in enumerate(metrics["policy"])}
    headline = {"critic": "rule", "improvement_rate_rank_0_1": {"preliminary": 0.3, "adaptive": 0.6, "aligner": 0.45,
                                                                "label": None}}
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "report.json").write_text(json.dumps({"name": name, "recipe": "seft", "seed": 0, "store": "file://x",
                                                     "wall_seconds": 1.0, "metrics": metrics,
                                                     "summaries": {"evaluate": {"headline": headline}, "warmup": {
                                                         "trainings": {"reviser": {"losses": [3.0, 2.2, 1.5, 1.1, 0.9],
                                                                                   "logging_steps": 10}}}}}))
    return run_dir, samples


def test_report_md_has_the_tables_and_links_every_plot(tmp_path):
    run_dir, samples = fake_run(tmp_path)
    path = write_report(run_dir, samples)
    text = path.read_text()
    assert "## Revisers by original rank (rule)" in text and "| rank | n | preliminary benefit |" in text
    assert "## Labels by original rank" in text and "adaptive no" in text and "preliminary no" not in text
    assert "| policy | rule reward | rule vs reference |" in text
    assert "| DPO | 0.600 | 5.0% |" in text and "| after internal | 0.700 | 10.0% |" in text
    assert ("Improvement rate on rank 0-1 originals (rule): adaptive 60.0%, best baseline aligner 45.0% "
            "(preliminary 30.0%, aligner 45.0%, label -).") in text
    assert "| preliminary vs adaptive | rule | 50.0% | 50 | 40 | 50 |" in text
    links = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert sorted(links) == ["plots/labels_rule.png", "plots/losses.png", "plots/policy.png",
                             "plots/reviser_ranks_rule.png", "plots/rewards_rule.png"]
    assert all((run_dir / link).is_file() for link in links)


@pytest.mark.parametrize("name, min_size", [("reviser_ranks_rule", (300, 800)), ("labels_rule", (300, 400)),
                                            ("rewards_rule", (300, 800)), ("policy", (300, 500)),
                                            ("losses", (300, 500))])
def test_each_plot_is_a_real_png_and_not_blank(tmp_path, name, min_size):
    run_dir, samples = fake_run(tmp_path)
    write_report(run_dir, samples)
    assert has_ink(run_dir / "plots" / f"{name}.png", min_size)


def test_no_samples_means_no_histograms(tmp_path):
    run_dir, _ = fake_run(tmp_path)
    write_report(run_dir, None)
    assert not (run_dir / "plots" / "rewards_rule.png").exists()
    assert "rewards_rule" not in (run_dir / "report.md").read_text()


def test_compare_puts_runs_side_by_side(tmp_path):
    from rich.console import Console

    reports = [json.loads((fake_run(tmp_path, n, s)[0] / "report.json").read_text())
               for n, s in (("a", 0.0), ("b", 0.1))]
    console = Console(width=200, record=True)
    console.print(compare_table(reports))
    text = console.export_text()
    assert "policy reward: after internal (rule)" in text and "policy reward: DPO (rule)" in text
    assert "0.700" in text and "0.800" in text
    assert "adaptive reviser benefit, all ranks (rule)" in text
