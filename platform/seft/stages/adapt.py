"""adapt: continue training the preliminary reviser to emit the label first, then the target
(DESIGN.md step 4). A [No Revise] sample's completion is the label alone."""

from __future__ import annotations

from seft.chat import reviser_example
from seft.labelling import Label
from seft.records import read_jsonl, write_jsonl
from seft.stages import Ref, TrainSpec

NAME = "adapt"
LABEL_TOKENS = tuple(label.value for label in Label)


def inputs(spec) -> tuple[str, ...]:
    return ("warmup", "label")


def services(spec) -> dict:
    return {}


def trainings(spec) -> dict[str, TrainSpec]:
    return {"reviser": TrainSpec(Ref("warmup", "reviser"), "train.jsonl", spec.reviser_training,
                                 add_tokens=LABEL_TOKENS)}


def params(spec) -> dict:
    return {"training": spec.reviser_training.model_dump(), "seed": spec.seed}


def run(ctx) -> dict:
    examples = (reviser_example(row["prompt"], row["original"], Label(row["label"]), row["target"])
                for row in read_jsonl(ctx.input("label") / "labelled.jsonl"))
    n = write_jsonl(ctx.out / "train.jsonl", examples)
    ctx.train()
    return {"examples": n}
