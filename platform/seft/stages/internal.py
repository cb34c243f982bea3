"""internal: the policy's own answers, revised, fine-tune the policy (DESIGN.md step 5)."""

from seft.stages.evolution import evolve

NAME = "internal"


def inputs(spec) -> tuple[str, ...]:
    return ("prepare", "adapt") + (("bootstrap",) if spec.bootstrap else ())


def params(spec) -> dict:
    return {"training": spec.policy_training.model_dump(), "generation": spec.generation.model_dump(),
            "revision": spec.revision.model_dump(), "seed": spec.seed,
            "policy": None if spec.bootstrap else spec.models.policy}


def run(ctx) -> dict:
    return evolve(ctx, generator_model=ctx.model("policy"), policy_model=ctx.model("policy"))
