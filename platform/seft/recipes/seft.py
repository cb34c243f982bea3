"""SEFT (arXiv 2406.10813): prepare > warmup > label > adapt > internal > external > evaluate,
after an optional bootstrap that makes a demo task and models."""

from __future__ import annotations

from seft.stages import Stage
from seft.stages import adapt, bootstrap, evaluate, external, internal, label, prepare, warmup

ORDER = (prepare, warmup, label, adapt, internal, external, evaluate)


def stages(spec) -> list[Stage]:
    out = []
    for mod in ((bootstrap,) if spec.bootstrap is not None else ()) + ORDER:
        out.append(Stage(mod.NAME, mod.inputs(spec), mod.params, mod.run, mod.services(spec), mod.trainings(spec)))
    return out
