"""SEFT (arXiv 2406.10813): prepare > warmup > label > adapt > internal > external > evaluate,
after an optional bootstrap that makes a demo task and models."""

from __future__ import annotations

from seft.stages import Stage
from seft.stages import adapt, bootstrap, evaluate, external, internal, label, prepare, warmup

ORDER = (prepare, warmup, label, adapt, internal, external, evaluate)


def stages(spec) -> list[Stage]:
    out = []
    if spec.bootstrap is not None:
        out.append(Stage(bootstrap.NAME, bootstrap.INPUTS, bootstrap.params, bootstrap.run))
    for mod in ORDER:
        out.append(Stage(mod.NAME, mod.inputs(spec), mod.params, mod.run))
    return out
