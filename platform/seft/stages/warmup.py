"""warmup: SFT the preliminary reviser (DESIGN.md step 2): input = prompt + original,
output = target. It starts from the reviser's base model (the external generator)."""

from __future__ import annotations

from seft.chat import reviser_example
from seft.records import RevisionSample, messages, read_jsonl, write_jsonl
from seft.stages import TrainSpec, model_ref

NAME = "warmup"


def inputs(spec) -> tuple[str, ...]:
    return ("prepare",) + (("bootstrap",) if spec.bootstrap else ())


def services(spec) -> dict:
    return {}


def trainings(spec) -> dict[str, TrainSpec]:
    return {"reviser": TrainSpec(model_ref(spec, "reviser_base"), "train.jsonl", spec.reviser_training)}


def params(spec) -> dict:
    return {"training": spec.reviser_training.model_dump(), "seed": spec.seed,
            "reviser_base": None if spec.bootstrap else spec.models.reviser_base}


def run(ctx) -> dict:
    examples = (reviser_example(messages(s.prompt), s.original, None, s.target)
                for s in read_jsonl(ctx.input("prepare") / "warmup.jsonl", RevisionSample))
    n = write_jsonl(ctx.out / "train.jsonl", examples)
    ctx.train()
    return {"examples": n}
