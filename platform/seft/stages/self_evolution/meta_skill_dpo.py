"""meta_skill_dpo (EVOLVE's activation, with `self_evolution.dpo` set): DPO from the meta_skill
model on the corpus's refinement pairs: the refined response chosen over the response left as it
was, as a refinement of it, and (reconstruct) as a direct answer."""

from __future__ import annotations

from seft.refinement import MetaSkillRecord, Step, round_pairs
from seft.records import messages, read_jsonl, write_jsonl
from seft.stages import Ref, Stage, TrainSpec

def stage(spec) -> Stage:
    evo = spec.self_evolution
    return Stage("meta_skill_dpo", run, reads=("self_evolution.reconstruct",), inputs=("meta_skill",), trainings={
        "policy": TrainSpec(Ref("meta_skill", "policy"), "train.jsonl", evo.dpo, method="dpo", beta=evo.beta)})


def run(ctx) -> dict:
    reconstruct = ctx.spec.self_evolution.reconstruct
    pairs = []
    for rec in read_jsonl(ctx.input("meta_skill") / "corpus.jsonl", MetaSkillRecord):
        if rec.response != rec.refined:  # the corpus's refinement is better by construction
            chain = [Step(rec.response, reward=0.0), Step(rec.refined, rec.feedback, reward=1.0)]
            pairs += round_pairs(messages(rec.prompt), chain, reconstruct)
    return {"pairs": write_jsonl(ctx.out / "train.jsonl", pairs)}
