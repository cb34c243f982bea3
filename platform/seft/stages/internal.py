"""internal: the policy's own answers, revised by the adaptive reviser, fine-tune the policy."""

from seft.stages import Stage, model_ref
from seft.stages.evolution import evolution_stage


def stage(spec) -> Stage:
    policy = model_ref(spec, "policy")
    return evolution_stage(spec, "internal", generator=policy, policy=policy)
