"""external: the external generator's answers, revised, fine-tune the policy further
(DESIGN.md step 6), starting from the internal stage's policy."""

from seft.stages import Ref, model_ref
from seft.stages import evolution

NAME = "external"


def inputs(spec) -> tuple[str, ...]:
    return ("prepare", "adapt", "internal") + (("bootstrap",) if spec.bootstrap else ())


def services(spec) -> dict:
    return evolution.services(generator=model_ref(spec, "generator"))


def trainings(spec) -> dict:
    return evolution.trainings(spec, policy=Ref("internal", "policy"))


def params(spec) -> dict:
    return {"training": spec.policy_training.model_dump(), "generation": spec.generation.model_dump(),
            "revision": spec.revision.model_dump(), "seed": spec.seed,
            "generator": None if spec.bootstrap else spec.models.generator}


def run(ctx) -> dict:
    return evolution.evolve(ctx)
