"""internal: the policy's own answers, revised, fine-tune the policy (DESIGN.md step 5)."""

from seft.stages import model_ref
from seft.stages import evolution

NAME = "internal"


def inputs(spec) -> tuple[str, ...]:
    return ("prepare", "adapt") + (("bootstrap",) if spec.bootstrap else ())


def services(spec) -> dict:
    return evolution.services(generator=model_ref(spec, "policy"))


def trainings(spec) -> dict:
    return evolution.trainings(spec, policy=model_ref(spec, "policy"))


def params(spec) -> dict:
    return {"training": spec.policy_training.model_dump(), "generation": spec.generation.model_dump(),
            "revision": spec.revision.model_dump(), "seed": spec.seed,
            "policy": None if spec.bootstrap else spec.models.policy}


def run(ctx) -> dict:
    return evolution.evolve(ctx)
