"""adapt: continue training the preliminary reviser to emit the label first, then the target.
A [No Revise] sample's completion is the label alone: a reviser that says it stops there."""

from __future__ import annotations

from seft.chat import reviser_example
from seft.labelling import LABEL_TOKENS, Label
from seft.records import read_jsonl, write_jsonl
from seft.stages import Ref, Stage, TrainSpec


def stage(spec) -> Stage:
    return Stage("adapt", run, inputs=("label",), trainings={
        "reviser": TrainSpec(Ref("warmup", "reviser"), "train.jsonl", spec.reviser_training,
                             add_tokens=LABEL_TOKENS)})


def run(ctx) -> dict:
    examples = (reviser_example(row["prompt"], row["original"], Label(row["label"]), row["target"])
                for row in read_jsonl(ctx.input("label") / "labelled.jsonl"))
    return {"examples": write_jsonl(ctx.out / "train.jsonl", examples)}
