"""SELF (arXiv 2310.00533) and EVOLVE (arXiv 2502.05605), on SEFT's parts:
prepare > meta_skill > [meta_skill_dpo] > round_1 .. round_N > evaluate, after an optional
bootstrap. The two differ in their defaults (seft.spec.SelfEvolution, EVOLVE_DEFAULTS): SELF
learns feedback from a teacher and keeps what the critic (or its own feedback) accepts; EVOLVE
refines without feedback, samples several answers and refines the best, and can train with DPO
on its refinement chains."""

from __future__ import annotations

from seft.stages import Stage, bootstrap, prepare
from seft.stages.self_evolution import evaluate, meta_skill, meta_skill_dpo
from seft.stages.self_evolution import round as rounds


def modules(spec) -> list:
    """The recipe's stage modules, in order, but for the rounds (rounds.stage(spec, k))."""
    return ([bootstrap] if spec.bootstrap is not None else []) + [prepare, meta_skill] + (
        [meta_skill_dpo] if spec.self_evolution.dpo is not None else [])


def stages(spec) -> list[Stage]:
    return ([mod.stage(spec) for mod in modules(spec)]
            + [rounds.stage(spec, k) for k in range(1, spec.self_evolution.rounds + 1)] + [evaluate.stage(spec)])
