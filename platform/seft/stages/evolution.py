"""What internal and external evolution share: a generator answers the unlabelled prompts, the
adaptive reviser revises the answers, and the policy is fine-tuned on (prompt, revised)."""

from __future__ import annotations

from collections import Counter

from seft.client import GeneratorClient, ReviserClient
from seft.records import SFTExample, read_jsonl, write_jsonl
from seft.stages import Ref, ServiceSpec, Stage, TrainSpec


def evolution_stage(spec, name: str, generator: Ref, policy: Ref) -> Stage:
    """Stage `name`: `generator` answers, the policy trains on from `policy`."""
    return Stage(name, evolve, reads=("generation", "revision"), inputs=("prepare",),
                 services={"generator": ServiceSpec("generator", generator),
                           "reviser": ServiceSpec("reviser", Ref("adapt", "reviser"))},
                 trainings={"policy": TrainSpec(policy, "train.jsonl", spec.policy_training)})


def evolve(ctx) -> dict:
    spec = ctx.spec
    records = list(read_jsonl(ctx.input("prepare") / "prompts.jsonl"))
    prompts = [r["prompt"] for r in records]
    with ctx.services() as ep:
        with (ctx.progress("generating", len(prompts)) as advance,
              GeneratorClient(ep["generator"], batch_size=spec.services.batch_size) as gen):
            drafts = gen.generate(prompts, spec.generation, seed=spec.seed, on_batch=advance)
        with (ctx.progress("revising (adaptive reviser)", len(prompts)) as advance,
              ReviserClient(ep["reviser"], batch_size=spec.services.batch_size) as reviser):
            revisions = reviser.revise(list(zip(prompts, drafts)), spec.revision, seed=spec.seed, on_batch=advance)
    write_jsonl(ctx.out / "revised.jsonl", (
        {"id": r["id"], "prompt": r["prompt"], "draft": d, "label": v.label.value if v.label else None,
         "revised": v.revised, "response": v.text} for r, d, v in zip(records, drafts, revisions)))
    write_jsonl(ctx.out / "train.jsonl", (
        SFTExample(prompt=p, completion=[{"role": "assistant", "content": v.text}])
        for p, v in zip(prompts, revisions) if v.text.strip()))
    labels = Counter(v.label.short if v.label else "none" for v in revisions)
    return {"prompts": len(prompts), "revised_share": sum(v.revised for v in revisions) / len(revisions),
            "labels": {k: labels[k] / len(revisions) for k in ("major", "minor", "no")}}
