"""warmup: SFT the preliminary reviser: input = prompt + original, output = target. It starts
from the reviser's base model (the external generator, as in the paper)."""

from __future__ import annotations

from seft.chat import reviser_example
from seft.records import RevisionSample, messages, read_jsonl, write_jsonl
from seft.stages import Stage, TrainSpec, model_ref


def stage(spec) -> Stage:
    return Stage("warmup", run, inputs=("prepare",), trainings={
        "reviser": TrainSpec(model_ref(spec, "reviser_base"), "train.jsonl", spec.reviser_training)})


def run(ctx) -> dict:
    examples = (reviser_example(messages(s.prompt), s.original, None, s.target)
                for s in read_jsonl(ctx.input("prepare") / "warmup.jsonl", RevisionSample))
    return {"examples": write_jsonl(ctx.out / "train.jsonl", examples)}
