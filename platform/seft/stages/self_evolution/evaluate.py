"""evaluate (SELF, EVOLVE): every model of the run (the initial policy, the meta-skill model, and
the model after each round) answers the held-out prompts greedily, then refines its own answer
`self_evolution.inference.rounds` times with no critic in the loop (no best-of-n, no keep-best):
what the model itself does at inference. The critic scores every step: the direct answer's reward
and the self-refined answer's, per model, and win rates against the reference responses."""

from __future__ import annotations

from statistics import fmean

from seft.client import CriticClient, GeneratorClient
from seft.metrics import win_rate
from seft.records import read_jsonl, write_jsonl
from seft.refinement import final
from seft.recipes.self_evolution import Refine
from seft.stages import Ref, ServiceSpec, Stage, model_ref
from seft.stages.self_evolution import round as rounds


def models(spec) -> dict[str, Ref]:
    """{name: model}, in training order."""
    evo = spec.self_evolution
    out = {"initial": model_ref(spec, "policy"), "meta_skill": Ref("meta_skill", "policy")}
    if evo.dpo is not None:
        out["meta_skill_dpo"] = Ref("meta_skill_dpo", "policy")
    return out | {rounds.name(k): Ref(rounds.name(k), "policy") for k in range(1, evo.rounds + 1)}


def stage(spec) -> Stage:
    critic = spec.refinement_critic
    return Stage("evaluate", run, reads=("evaluation", "self_evolution.inference.rounds"), inputs=("prepare",),
                 services={f"policy-{name}": ServiceSpec("generator", ref, critic=critic)
                           for name, ref in models(spec).items()})


def run(ctx) -> dict:
    spec, names = ctx.spec, [key.removeprefix("policy-") for key in ctx.plan.services]
    heldout = list(read_jsonl(ctx.input("prepare") / "heldout.jsonl"))
    prompts, critic = [h["prompt"] for h in heldout], ctx.plan.services[f"policy-{names[0]}"].critic.name
    # the model's own refinement: one greedy answer, every refinement returned
    own = Refine(rounds=spec.self_evolution.inference.rounds, samples=1, keep_best=False)
    metrics: dict = {"critic": critic, "refinement": {}, "policy": {}, "policy_vs_reference": {}}
    rows = []
    with ctx.services() as ep:
        # each generator serves its critic beside it (seft serve generator --critic): it scores the references
        with CriticClient(ep[f"policy-{names[0]}"], batch_size=spec.services.batch_size) as scorer:
            references = scorer.score([(p, h["reference"]) for p, h in zip(prompts, heldout)])
        for name in names:
            with (ctx.progress(f"answering and refining held-out prompts ({name})", len(prompts)) as advance,
                  GeneratorClient(ep[f"policy-{name}"], batch_size=spec.services.batch_size) as gen):
                chains = gen.refine(prompts, own, spec.evaluation.sampling, seed=spec.seed, on_batch=advance)
            direct, refined = [c[0].reward for c in chains], [final(c).reward for c in chains]
            metrics["refinement"][name] = {"direct": fmean(direct), "refined": fmean(refined),
                                           "improved": sum(r > d for d, r in zip(direct, refined)) / len(chains),
                                           "worsened": sum(r < d for d, r in zip(direct, refined)) / len(chains)}
            metrics["policy"][name] = {critic: fmean(direct)}
            metrics["policy_vs_reference"][name] = {critic: win_rate(direct, references)}
            rows += [{"model": name, "id": h["id"], "steps": [vars(s) for s in c]} for h, c in zip(heldout, chains)]
    write_jsonl(ctx.out / "samples.jsonl", rows)
    first_round, last_round = rounds.name(1), names[-1]
    headline = {"critic": critic,
                "direct": {n: metrics["refinement"][n]["direct"] for n in names},
                "refined": {n: metrics["refinement"][n]["refined"] for n in names},
                "last_round_gain_direct": (metrics["refinement"][last_round]["direct"]
                                           - metrics["refinement"][first_round]["direct"])}
    return {"metrics": metrics, "headline": headline}
