"""round_<k>: one round of self-evolution (SELF, EVOLVE). The last model answers the unlabelled
prompts and refines its own answers through the generator service (`self_evolution.inference`:
sample, refine, keep the best by the critic); the round keeps the answers that pass
`self_evolution.filter` and fine-tunes on them: SFT on the kept answers (reconstruct) and on the
refinements that improved, plus as many of the corpus's refinement examples so the meta-skill
is not forgotten; or DPO on the chains' pairs (method dpo). With `restart` it trains the initial
policy on the corpus and all rounds' data so far instead of continuing the last model."""

from __future__ import annotations

import random
from functools import partial

from seft.client import GeneratorClient
from seft.records import read_jsonl, write_jsonl
from seft.refinement import final, kept_answer, round_examples, round_pairs
from seft.stages import Ref, ServiceSpec, Stage, TrainSpec, model_ref

READS = tuple(f"self_evolution.{f}" for f in ("inference", "filter", "min_reward", "accept", "method",
                                                "reconstruct", "restart")) + ("generation",)


def name(k: int) -> str:
    return f"round_{k}"


def trained_before(spec, k: int) -> str:
    """The stage whose model round k starts from (and serves)."""
    if k > 1:
        return name(k - 1)
    return "meta_skill_dpo" if spec.self_evolution.dpo is not None else "meta_skill"


def stage(spec, k: int) -> Stage:
    """Round k. Its settings are the ones run() reads, not self_evolution.rounds: adding a round
    leaves the earlier ones as they are."""
    evo = spec.self_evolution
    last = trained_before(spec, k)
    earlier = tuple(name(i) for i in range(1, k - 1)) if evo.restart else ()
    dpo = evo.method == "dpo"
    start = model_ref(spec, "policy") if evo.restart else Ref(last, "policy")
    training = TrainSpec(start, "train.jsonl", evo.dpo if dpo else spec.policy_training, method=evo.method,
                         beta=evo.beta)
    generator = ServiceSpec("generator", Ref(last, "policy"), critic=spec.refinement_critic)
    return Stage(name(k), partial(run, k=k), reads=READS, inputs=("prepare", "meta_skill") + earlier,
                 services={"generator": generator}, trainings={"policy": training})


def run(ctx, k: int) -> dict:
    spec, evo = ctx.spec, ctx.spec.self_evolution
    records = list(read_jsonl(ctx.input("prepare") / "prompts.jsonl"))
    prompts = [r["prompt"] for r in records]
    with (ctx.services() as ep, ctx.progress(f"answering and refining (round {k})", len(prompts)) as advance,
          GeneratorClient(ep["generator"], batch_size=spec.services.batch_size) as gen):
        chains = gen.refine(prompts, evo.inference, spec.generation, seed=spec.seed + 1000 * k, on_batch=advance)
    kept = [kept_answer(c, evo.filter, evo.min_reward, evo.accept) for c in chains]
    write_jsonl(ctx.out / "chains.jsonl", (
        {"id": r["id"], "prompt": r["prompt"], "kept": s.text if s else None,
         "steps": [vars(step) for step in c]} for r, c, s in zip(records, chains, kept)))
    if evo.method == "dpo":
        new = [x for p, c in zip(prompts, chains) for x in round_pairs(p, c, evo.reconstruct)]
    else:
        new = [x for p, c, s in zip(prompts, chains, kept) for x in round_examples(p, c, s, evo.reconstruct)]
    write_jsonl(ctx.out / "new.jsonl", new)
    write_jsonl(ctx.out / "train.jsonl", new + _more(ctx, k, len(new)))

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None

    return {"prompts": len(prompts), "kept": sum(s is not None for s in kept), "examples": len(new),
            "reward_direct": mean(c[0].reward for c in chains), "reward_refined": mean(final(c).reward for c in chains)}


def _more(ctx, k: int, n: int) -> list[dict]:
    """What a round trains on besides its own data. restart: every earlier round's data, and for
    SFT the corpus's examples. Otherwise, for SFT, n of the corpus's examples, so the meta-skill is
    kept up."""
    evo = ctx.spec.self_evolution
    earlier = [x for i in range(1, k) for x in read_jsonl(ctx.input(name(i)) / "new.jsonl")] if evo.restart else []
    if evo.method == "dpo":
        return earlier
    corpus = list(read_jsonl(ctx.input("meta_skill") / "train.jsonl"))
    if evo.restart:
        return corpus + earlier
    return random.Random(ctx.spec.seed + k).sample(corpus, min(n, len(corpus)))
