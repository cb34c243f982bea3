import subprocess
import sys

import pytest
import yaml

from seft.cli import main
from seft.errors import SpecError
from seft.specfile import load_spec, parse_spec

from helpers import ROOT

QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def quickstart() -> dict:
    return yaml.safe_load(QUICKSTART.read_text())


def test_quickstart_validates_with_paper_defaults_where_unset():
    spec = load_spec(QUICKSTART)
    assert spec.name == "quickstart" and spec.bootstrap is not None
    assert spec.labelling.p == 1.0 and spec.reviser_training.epochs == 15  # set in the file; the rest defaults
    bare = parse_spec({"name": "x", "data": {"preference": "p.jsonl", "prompts": "q.jsonl"},
                       "models": {"policy": "a", "reviser_base": "b", "generator": "c"},
                       "critics": [{"name": "rm", "backend": "reward-model", "model": "rm"}]})
    assert (bare.labelling.alpha, bare.labelling.beta, bare.labelling.p) == (0.3, 1.0, 0.8)
    assert bare.reviser_training.learning_rate == 2e-5 and bare.reviser_training.lr_scheduler == "cosine"
    assert bare.policy_training.learning_rate == 5e-7 and bare.policy_training.lr_scheduler == "linear"
    assert bare.reviser_training.batch_size == 128 and bare.reviser_training.deepspeed == "zero3"


def test_wrong_type_names_field_and_value():
    data = quickstart()
    data["labelling"]["alpha"] = "low"
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert "labelling.alpha" in str(err.value) and "'low'" in str(err.value)


def test_unknown_key_names_field_and_value():
    data = quickstart()
    data["reviser_training"]["learning_rat"] = 0.1
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert "reviser_training.learning_rat" in str(err.value) and "0.1" in str(err.value)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["labelling"].update(alpha=2.0), "must not exceed beta"),
    (lambda d: d.update(name="Bad_Name"), "name"),
    (lambda d: d["critics"][0].update(backend="reward-model"), "needs 'model'"),
    (lambda d: d["data"].update(preference="x.jsonl"), "bootstrap makes the data"),
    (lambda d: d["reviser_training"].update(batch_size=100, per_device_batch_size=64), "not a multiple"),
    (lambda d: d["labelling"].update(critic="missing"), "is not one of"),
    (lambda d: d.update(baselines={"revisers": ["aligner", "rlhf"]}), r"baselines.revisers.1: .*'rlhf'"),
    (lambda d: d.update(baselines={"policies": ["dpo", "dpo"]}), r"baselines.policies: .*must not repeat"),
    (lambda d: d.update(baselines={"no_revise_share": 1.5}), r"baselines.no_revise_share: .*1.5"),
    (lambda d: d["bootstrap"].update(task="add"), r"bootstrap.task: .*'sort' or 'spell' \(got 'add'\)"),
])
def test_semantic_errors(mutate, needle):
    data = quickstart()
    mutate(data)
    with pytest.raises(SpecError, match=needle):
        parse_spec(data)


def test_validate_cli_exits_2_naming_field_and_value(tmp_path, capsys):
    data = quickstart()
    data["seed"] = "zero"
    data["surprise"] = True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "seed" in err and "'zero'" in err
    assert "surprise" in err and "True" in err


def test_validate_cli_ok_and_set_override(capsys):
    assert main(["validate", str(QUICKSTART)]) == 0
    assert main(["validate", str(QUICKSTART), "--set", "labelling.p=2"]) == 2
    assert "labelling.p" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr


def smollm2() -> dict:
    return yaml.safe_load((ROOT / "examples" / "smollm2-capitals.yaml").read_text())


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["data"].update(preference="p.jsonl"), "ranking builds the preference data: remove data.preference"),
    (lambda d: d["ranking"].update(generator=1), "at least two answers per prompt, got generator 1 \\+ policy 0"),
    (lambda d: d["ranking"].update(critic="judge"), "ranking.critic 'judge' is not one of \\['capital'\\]"),
    (lambda d: d.pop("ranking"), "without bootstrap the spec needs data.preference \\(or ranking\\)"),
    (lambda d: d["data"].update(original_ranks=[1, 1]), "data.original_ranks: .*distinct ranks of at least 0"),
])
def test_ranking_and_data_errors(mutate, needle):
    data = smollm2()
    mutate(data)
    with pytest.raises(SpecError, match=needle):
        parse_spec(data)


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(example):
    assert load_spec(example).name


def test_baselines_add_their_stages_and_what_evaluate_serves():
    from seft.recipes import stages_for

    plain = stages_for(load_spec(QUICKSTART))
    assert [s.name for s in plain] == ["bootstrap", "prepare", "warmup", "label", "adapt", "internal", "external",
                                       "evaluate"]
    spec = load_spec(ROOT / "examples" / "quickstart-baselines.yaml")
    stages = {s.name: s for s in stages_for(spec)}
    assert list(stages) == ["bootstrap", "prepare", "warmup", "label", "adapt", "baseline_revisers", "internal",
                            "external", "baseline_policies", "evaluate"]
    revisers = stages["baseline_revisers"].trainings
    assert set(revisers) == {"aligner", "label"} and revisers["label"].add_tokens and not revisers["aligner"].add_tokens
    policies = stages["baseline_policies"].trainings
    assert {n: t.method for n, t in policies.items()} == {"sft_chosen": "sft", "dpo": "dpo", "orpo": "orpo",
                                                          "sft_generator": "sft", "external_only": "sft"}
    assert {t.model.stage for t in policies.values()} == {"bootstrap"}  # all from the initial policy
    served = stages["evaluate"].services
    assert {n for n in served if n.startswith("reviser-")} == {f"reviser-{n}" for n in
                                                               ("preliminary", "adaptive", "aligner", "label")}
    assert served["reviser-label"].label_first and not served["reviser-aligner"].label_first
    assert len([n for n in served if n.startswith("policy-")]) == 8
    assert {"baseline_revisers", "baseline_policies"} <= set(stages["evaluate"].needs)
    # The stages before the baselines plan the same as the quickstart's: a finished run is reused.
    for st in plain[:-1]:
        assert st.params(spec) == st.params(load_spec(QUICKSTART)) and stages[st.name].needs == st.needs



def test_a_baseline_reviser_trains_with_its_own_entry_where_set_else_as_the_adaptive_reviser():
    from seft.recipes import stages_for

    data = yaml.safe_load((ROOT / "examples" / "quickstart-baselines.yaml").read_text())
    default = load_spec(ROOT / "examples" / "quickstart-baselines.yaml")
    data["baselines"]["training"]["aligner"] = {**data["reviser_training"], "epochs": 5}
    shorter = parse_spec(data)
    revisers = {s.name: s for s in stages_for(shorter)}["baseline_revisers"]
    assert revisers.trainings["aligner"].training.epochs == 5
    assert revisers.trainings["label"].training == shorter.reviser_training == default.reviser_training
    assert revisers.params(shorter) != {s.name: s for s in stages_for(default)}["baseline_revisers"].params(default)

def test_self_and_evolve_stage_lists_defaults_and_shared_bootstrap():
    from seft.recipes import stages_for

    self_spec = load_spec(ROOT / "examples" / "quickstart-self.yaml")
    evolve = load_spec(ROOT / "examples" / "quickstart-evolve.yaml")
    assert [s.name for s in stages_for(self_spec)] == ["bootstrap", "prepare", "meta_skill", "round_1", "round_2",
                                                       "evaluate"]
    stages = {s.name: s for s in stages_for(evolve)}
    assert list(stages) == ["bootstrap", "prepare", "meta_skill", "meta_skill_dpo", "round_1", "round_2", "evaluate"]
    assert stages["meta_skill_dpo"].trainings["policy"].method == "dpo"
    assert stages["round_1"].services["generator"].model.stage == "meta_skill_dpo"
    assert stages["round_2"].trainings["policy"].model.stage == "round_1"  # continues by default
    assert stages["round_2"].services["generator"].critic.name == "sort-rule"
    # EVOLVE's defaults where its example is silent; SELF's are the field defaults
    assert (evolve.self_evolution.inference.samples, evolve.self_evolution.inference.rounds) == (4, 2)
    assert (self_spec.self_evolution.inference.samples, self_spec.self_evolution.inference.rounds) == (1, 1)
    # the same bootstrap and prepare: `--set name=...` reuses them across the two recipes
    for name in ("bootstrap", "prepare"):
        assert stages[name].params(evolve) == next(s for s in stages_for(self_spec) if s.name == name).params(self_spec)
    restart = load_spec(ROOT / "examples" / "quickstart-self.yaml", ["self_evolution.restart=true"])
    round_2 = next(s for s in stages_for(restart) if s.name == "round_2")
    assert round_2.trainings["policy"].model.stage == "bootstrap" and "round_1" in round_2.needs


@pytest.mark.parametrize("change, needle", [
    (["recipe=self", "self_evolution.feedback=null"], "set self_evolution.feedback (a teacher)"),
    (["self_evolution.method=dpo", "self_evolution.dpo=null"], "method dpo needs self_evolution.dpo"),
    (["self_evolution.critic=nope"], "self_evolution.critic 'nope' is not one of ['sort-rule']"),
    (["self_evolution.filter=judge"], "self_evolution.filter: Input should be 'critic', 'self' or 'none'"),
    (["self_evolution.inference.rounds=9"], "self_evolution.inference.rounds: Input should be less than or equal"),
    (["recipe=seft"], "self_evolution is for recipe self or evolve"),
])
def test_self_evolution_errors_name_the_field(change, needle):
    with pytest.raises(SpecError) as err:
        load_spec(ROOT / "examples" / "quickstart-evolve.yaml", change)
    assert needle in str(err.value)
