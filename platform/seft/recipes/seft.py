"""SEFT (arXiv 2406.10813): prepare > warmup > label > adapt > internal > external > evaluate,
after an optional bootstrap that makes a demo task and models, and with the paper's baselines
(baseline_revisers after adapt, baseline_policies after external) when the spec asks for them."""

from __future__ import annotations

from seft.stages import Stage
from seft.stages import (adapt, baseline_policies, baseline_revisers, bootstrap, evaluate, external, internal, label,
                         prepare, warmup)


def modules(spec) -> list:
    """The recipe's stage modules, in order."""
    baselines = spec.baselines
    return ([bootstrap] if spec.bootstrap is not None else []) + [prepare, warmup, label, adapt] + (
        [baseline_revisers] if baselines and baselines.revisers else []) + [internal, external] + (
        [baseline_policies] if baselines and baselines.policies else []) + [evaluate]


def stages(spec) -> list[Stage]:
    return [mod.stage(spec) for mod in modules(spec)]
