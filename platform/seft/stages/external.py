"""external: the external generator's answers, revised, fine-tune the policy further
(DESIGN.md step 6), starting from the internal stage's policy."""

from seft.stages.evolution import evolve

NAME = "external"


def inputs(spec) -> tuple[str, ...]:
    return ("prepare", "adapt", "internal") + (("bootstrap",) if spec.bootstrap else ())


def params(spec) -> dict:
    return {"training": spec.policy_training.model_dump(), "generation": spec.generation.model_dump(),
            "revision": spec.revision.model_dump(), "seed": spec.seed,
            "generator": None if spec.bootstrap else spec.models.generator}


def run(ctx) -> dict:
    return evolve(ctx, generator_model=ctx.model("generator"),
                  policy_model=str(ctx.input("internal") / "policy"))
