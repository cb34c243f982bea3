"""scripts/directions.py: the README's table of the paper's four directions, from a run's report."""

import importlib.util
import json

import pytest

from helpers import ROOT

spec = importlib.util.spec_from_file_location("directions", ROOT / "scripts" / "directions.py")
directions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(directions)

NO = [0.9, 0.5, 0.3, 0.1, 0.05, 0.0, 0.0]
MAJOR = [0.0, 0.1, 0.4, 0.7, 0.9, 1.0, 1.0]
POLICY = {"initial": 0.4, "sft_chosen": 0.7, "dpo": 0.45, "orpo": 0.6, "sft_generator": 0.7,
          "external_only": 0.72, "internal": 0.65, "external": 0.8}


def report(no=NO, benefit_0=0.01, prelim_benefit_0=-0.1, adaptive_rate=0.9, policy=POLICY) -> dict:
    def reviser(labels, benefit):
        return {str(k): {"labels": labels(k), "mean_benefit": benefit if k == 0 else 0.3} for k in range(7)}
    adaptive = reviser(lambda k: {"no": no[k], "major": MAJOR[k], "minor": 1 - no[k] - MAJOR[k]}, benefit_0)
    plain = lambda k: {"no": 0.0, "major": 0.0, "minor": 0.0}  # noqa: E731
    revisers = {"preliminary": reviser(plain, prelim_benefit_0), "adaptive": adaptive,
                "aligner": reviser(plain, -0.05), "label": reviser(plain, -0.05)}
    return {"metrics": {"reviser": {name: {"rule": r} for name, r in revisers.items()}},
            "summaries": {"evaluate": {"headline": {
                "critic": "rule", "policy_reward": policy, "improvement_rate_rank_0_1": {
                    "preliminary": 0.5, "adaptive": adaptive_rate, "aligner": 0.6, "label": 0.55}}}}}


def test_every_direction_holds_and_the_cells_carry_the_numbers():
    cells, held = directions.directions(report())
    assert held == [1, 2, 3, 4]
    assert cells[0] == "90% / 0%" and cells[1] == "0 10 40 70 90 100 100"
    assert cells[2] == "90.0% vs 50.0 / 60.0 / 55.0" and cells[3] == "+0.010 (-0.100)"
    assert cells[4] == "0.800 vs 0.700 / 0.450 / 0.600" and cells[6] == "0.800 (0.400)"


@pytest.mark.parametrize("changed, failed", [
    ({"no": [0.9, 0.5, 0.3, 0.1, 0.05, 0.0, 0.18]}, 1),       # leaves 18% of the worst answers alone
    ({"no": [0.4] + NO[1:]}, 1),                               # revises most right answers
    ({"adaptive_rate": 0.59}, 2),                              # below Aligner's 0.6
    ({"benefit_0": -0.002}, 2),                                # hurts rank 0 where the preliminary does
    ({"policy": POLICY | {"sft_chosen": 0.85}}, 3),            # SFT on chosen wins
    ({"policy": POLICY | {"external_only": 0.81}}, 3),         # external alone wins
    ({"policy": POLICY | {"external": 0.96, "sft_chosen": 0.7}}, 4),  # saturated
])
def test_a_direction_that_does_not_hold_is_left_out(changed, failed):
    _, held = directions.directions(report(**changed))
    assert failed not in held and len(held) == 3


def test_rank_0_benefit_is_not_required_where_revising_rank_0_helps():
    assert 2 in directions.directions(report(benefit_0=-0.01, prelim_benefit_0=0.02))[1]


def test_main_prints_one_column_per_run(tmp_path, capsys):
    runs = []
    for name, r in (("qb-0", report()), ("qb-1", report(benefit_0=-0.002))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(r))
        runs.append(tmp_path / name)
    directions.main(runs)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| direction | measured | qb-0 | qb-1 |" and len(lines) == 2 + len(directions.ROWS) + 1
    assert lines[-1] == "| | directions that hold | 1, 2, 3, 4 | 1, 3, 4 |"
