"""`seft run` of examples/quickstart-self.yaml, then of quickstart-evolve.yaml under the same name
(it reuses the bootstrap and prepare stages), both made smaller, to the end on a file:// store;
their report.json: every model's direct and self-refined reward.

The claims asserted are the ones with margins that hold on any machine:
- the meta-skill stage teaches the model the task (held-out direct reward: SELF 0.289 -> 0.554,
  EVOLVE 0.289 -> 0.572, measured on an AVX-512 EPYC);
- a round trains only on answers the critic accepted (min_reward), a guarantee of the design;
- each round makes the model better on the prompts it evolves on: round 2 keeps more answers than
  round 1 (SELF 171 -> 229 of 600, EVOLVE 244 -> 295).
The held-out reward of round 2 against round 1 is printed, not asserted: at this size it moves
by about as much as a change of CPU moves it (SELF 0.526 -> 0.516 there, 0.522 -> 0.532 on the
machine this test was first written on; EVOLVE 0.550 -> 0.590 and 0.567 -> 0.590). README "SELF
and EVOLVE" has the full-size numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from helpers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-1")]  # make test runs groups e2e-1 and e2e-2 side by side
NAME = "self-evolution"
PROMPTS = 600


def small(tmp_path, recipe: str):
    data = yaml.safe_load((ROOT / "examples" / f"quickstart-{recipe}.yaml").read_text())
    data.update(name=NAME, store="file://./runs")
    data["bootstrap"].update(preference_prompts=800, unlabelled_prompts=PROMPTS)
    data["bootstrap"]["policy_training"].update(max_steps=200)
    data["bootstrap"]["generator_training"].update(max_steps=2)  # SELF and EVOLVE do not use it
    data["self_evolution"]["training"].update(max_steps=150)
    data["policy_training"].update(max_steps=60)
    if data["self_evolution"].get("dpo"):
        data["self_evolution"]["dpo"].update(max_steps=10)
    data["data"]["test_size"] = 120
    path = tmp_path / f"{recipe}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def seft_run(tmp_path, spec):
    out = subprocess.run([sys.executable, "-m", "seft.cli", "run", str(spec)], cwd=tmp_path, text=True,
                         capture_output=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def check_report(run_dir, recipe: str, stages: list[str]) -> dict:
    report = json.loads((run_dir / "report.json").read_text())
    assert report["recipe"] == recipe and set(stages) <= set(report["stages"])
    assert all(report["stages"][s]["state"] == "done" for s in stages)
    refinement = report["metrics"]["refinement"]
    models = ["initial", "meta_skill"] + (["meta_skill_dpo"] if recipe == "evolve" else []) + ["round_1", "round_2"]
    assert list(refinement) == models
    for m in refinement.values():
        assert 0 <= m["direct"] <= 1 and 0 <= m["refined"] <= 1 and m["improved"] + m["worsened"] <= 1
    assert refinement["meta_skill"]["direct"] > refinement["initial"]["direct"] + 0.1  # it learnt the task
    headline = report["summaries"]["evaluate"]["headline"]
    assert headline["last_round_gain_direct"] == pytest.approx(
        refinement["round_2"]["direct"] - refinement["round_1"]["direct"])
    kept = {}
    for k in (1, 2):  # each round kept answers the critic accepted, and trained on them
        summary = report["summaries"][f"round_{k}"]
        assert summary["prompts"] == PROMPTS and 0 < summary["kept"] <= PROMPTS and summary["examples"] > 0
        chains = [json.loads(line) for line in (run_dir / f"round_{k}" / "chains.jsonl").open()]
        accepted = [next(s for s in c["steps"] if s["text"] == c["kept"]) for c in chains if c["kept"] is not None]
        assert len(accepted) == summary["kept"] and all(s["reward"] >= 1.0 for s in accepted)
        kept[k] = summary["kept"]
    assert kept[2] > kept[1], kept  # the round-1 model solves more of the prompts it evolved on
    markdown = (run_dir / "report.md").read_text()
    assert "## Direct and self-refined answers by round" in markdown and "| round_2 |" in markdown
    assert (run_dir / "plots" / "refinement.png").stat().st_size > 10_000
    return report


def test_self_then_evolve_run_to_the_end_and_each_round_solves_more_of_its_prompts(tmp_path):
    run_dir = tmp_path / "runs" / NAME
    out = seft_run(tmp_path, small(tmp_path, "self"))
    assert "Direct and self-refined answers" in out.stdout
    common = ["bootstrap", "prepare", "meta_skill"]
    report = check_report(run_dir, "self", common + ["round_1", "round_2", "evaluate"])
    corpus = [json.loads(line) for line in (run_dir / "meta_skill" / "corpus.jsonl").open()]
    assert corpus and all(r["feedback"] for r in corpus)  # SELF's corpus has the teacher's feedback
    chains = [json.loads(line) for line in (run_dir / "round_1" / "chains.jsonl").open()]
    assert all(len(c["steps"]) == 2 for c in chains)  # an answer and one refinement each
    assert all(c["kept"] is None or c["kept"] in [s["text"] for s in c["steps"]] for c in chains)
    print_rounds("SELF", report)

    out = seft_run(tmp_path, small(tmp_path, "evolve"))
    assert "bootstrap: up to date, skipped" in out.stdout and "prepare: up to date, skipped" in out.stdout
    report = check_report(run_dir, "evolve", common + ["meta_skill_dpo", "round_1", "round_2", "evaluate"])
    chains = [json.loads(line) for line in (run_dir / "round_1" / "chains.jsonl").open()]
    assert all(len(c["steps"]) == 3 and c["steps"][1]["feedback"] is None for c in chains)  # no feedback
    print_rounds("EVOLVE", report)


def print_rounds(recipe: str, report: dict) -> None:
    direct = {m: round(v["direct"], 3) for m, v in report["metrics"]["refinement"].items()}
    kept = {k: report["summaries"][f"round_{k}"]["kept"] for k in (1, 2)}
    print(f"\n{recipe}: held-out direct reward {direct}; answers kept by round {kept} of {PROMPTS}")
