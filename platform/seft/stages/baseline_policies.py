"""baseline_policies: the policies SEFT is compared with (the paper's Tables 1 and 2), each
fine-tuned from the initial policy with `policy_training` (or its `baselines.training` entry):

- sft_chosen: SFT on the best response (rank 0) of each training preference prompt;
- dpo, orpo: TRL's DPO and ORPO on (best, original) pairs of the same prompts, the original
  being the sample's response of a worse rank (prepare's warm-up and adaptive splits);
- sft_generator: SFT on the external generator's answers to the unlabelled prompts, unrevised;
- external_only: external evolution (the adaptive reviser's revisions of those answers)
  without internal evolution first.

The preference baselines need responses, so they train on the preference data's training
prompts; SEFT's evolution trains on the unlabelled prompts. All are evaluated on the same
held-out prompts."""

from __future__ import annotations

from itertools import chain

from seft.records import RevisionSample, SFTExample, messages, read_jsonl, write_jsonl
from seft.stages import Stage, TrainSpec, model_ref

FROM_EXTERNAL = ("sft_generator", "external_only")  # made from the external stage's data
PREFERENCE = ("dpo", "orpo")  # trained on pairs with TRL


def stage(spec) -> Stage:
    wanted = spec.baselines.policies
    return Stage("baseline_policies", run, reads=("baselines.policies",),
                 inputs=("prepare",) + (("external",) if set(wanted) & set(FROM_EXTERNAL) else ()), trainings={
        name: TrainSpec(model_ref(spec, "policy"), f"{name}.jsonl",
                        getattr(spec.baselines.training, name) or spec.policy_training,
                        method=name if name in PREFERENCE else "sft", beta=spec.baselines.beta)
        for name in wanted})


def _answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def chosen_example(s: RevisionSample) -> SFTExample:
    return SFTExample(prompt=s.prompt, completion=_answer(s.target))


def preference_pair(s: RevisionSample) -> dict:
    """TRL's conversational preference format: the best response over the sample's original."""
    return {"prompt": messages(s.prompt), "chosen": _answer(s.target), "rejected": _answer(s.original)}


def run(ctx) -> dict:
    spec, out = ctx.spec, ctx.out
    wanted = spec.baselines.policies
    prepared = ctx.input("prepare")
    samples = list(chain(read_jsonl(prepared / "warmup.jsonl", RevisionSample),
                         read_jsonl(prepared / "adaptive.jsonl", RevisionSample)))
    counts = {}
    if "sft_chosen" in wanted:
        counts["sft_chosen"] = write_jsonl(out / "sft_chosen.jsonl", map(chosen_example, samples))
    for name in PREFERENCE:
        if name in wanted:
            counts[name] = write_jsonl(out / f"{name}.jsonl", map(preference_pair, samples))
    if "sft_generator" in wanted:
        counts["sft_generator"] = write_jsonl(out / "sft_generator.jsonl", (
            SFTExample(prompt=r["prompt"], completion=_answer(r["draft"]))
            for r in read_jsonl(ctx.input("external") / "revised.jsonl") if r["draft"].strip()))
    if "external_only" in wanted:  # exactly the data the external stage trained on
        counts["external_only"] = write_jsonl(out / "external_only.jsonl",
                                              read_jsonl(ctx.input("external") / "train.jsonl"))
    return {"examples": counts}
