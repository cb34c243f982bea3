"""external: the external generator's answers, revised by the adaptive reviser, fine-tune the
policy further, from the internal stage's policy."""

from seft.stages import Ref, Stage, model_ref
from seft.stages.evolution import evolution_stage


def stage(spec) -> Stage:
    return evolution_stage(spec, "external", generator=model_ref(spec, "generator"), policy=Ref("internal", "policy"))
