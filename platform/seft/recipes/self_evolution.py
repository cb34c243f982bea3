"""SELF (arXiv 2310.00533) and EVOLVE (arXiv 2502.05605), on SEFT's parts:
prepare > meta_skill > [meta_skill_dpo] > round_1 .. round_N > evaluate, after an optional
bootstrap. The two differ in their defaults (SelfEvolution below, EVOLVE_DEFAULTS): SELF
learns feedback from a teacher and keeps what the critic (or its own feedback) accepts; EVOLVE
refines without feedback, samples several answers and refines the best, and can train with DPO
on its refinement chains."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from seft.settings import Model, Training


def modules(spec) -> list:
    """The recipe's stage modules, in order, but for the rounds (rounds.stage(spec, k)).
    (Imported here: stage modules import the pipeline spec, which is built from this module's
    settings.)"""
    from seft.stages import data_makers, prepare
    from seft.stages.self_evolution import meta_skill, meta_skill_dpo

    return data_makers(spec) + [prepare, meta_skill] + (
        [meta_skill_dpo] if spec.self_evolution.dpo is not None else [])


def stages(spec) -> list:
    from seft.stages.self_evolution import evaluate
    from seft.stages.self_evolution import round as rounds

    return ([mod.stage(spec) for mod in modules(spec)]
            + [rounds.stage(spec, k) for k in range(1, spec.self_evolution.rounds + 1)] + [evaluate.stage(spec)])


# -- the recipes' settings (self_evolution:) ----------------------------------------------------
class Refine(Model):
    """Inference-time self-refinement, an option of the generator service: answer (the critic's
    best of `samples` draws), then refine the answer `rounds` times."""

    rounds: int = Field(1, ge=0, le=8)
    samples: int = Field(1, ge=1, le=16, description="answers drawn before refining; the critic picks one")
    keep_best: bool = Field(True, description="drop a refinement the critic scores below its input")


class SelfEvolution(Model):
    """The SELF and EVOLVE recipes (`recipe: self | evolve`). The defaults are SELF's; EVOLVE's
    differ where EVOLVE_DEFAULTS says. One model answers and refines its own answers: a meta-skill
    stage teaches it both (SFT on a corpus of response, feedback, refined response), then each
    round it answers the unlabelled prompts, refines its answers (`inference`), keeps what passes
    `filter`, and is fine-tuned on that."""

    rounds: int = Field(2, ge=1, le=10)
    feedback: str | None = Field(None, description="'package.module:function(prompt, response) -> str': the "
                                 "teacher's feedback for a corpus built from the preference data (SELF)")
    corpus: str | None = Field(None, description="a meta-skill corpus JSONL (id, prompt, response, feedback, "
                               "refined); default: built from prepare's splits (original -> best response)")
    critic: str | None = Field(None, description="the critic that scores refinements; default: the first")
    inference: Refine = Refine()
    filter: Literal["critic", "self", "none"] = Field(
        "critic", description="which answers a round keeps: the critic's (min_reward), the model's own "
                              "judgement (its feedback equals `accept`), or all")
    min_reward: float = Field(1.0, allow_inf_nan=False)
    accept: str = Field("correct", min_length=1, description="the feedback that judges an answer right")
    restart: bool = Field(False, description="each round trains the initial policy on the corpus and every "
                                             "round's data so far, instead of continuing the last round's model")
    method: Literal["sft", "dpo"] = Field("sft", description="each round's training: SFT on the kept answers, "
                                          "or DPO on the refinement chains' pairs (EVOLVE)")
    reconstruct: bool = Field(True, description="train direct answers on the refined ones (EVOLVE's "
                                                "reconstructed dataset); else only the refinement skill")
    training: Training | None = Field(None, description="the meta-skill stage's; default policy_training "
                                      "(SFT rounds train with policy_training)")
    dpo: Training | None = Field(None, description="DPO on refined > original pairs after the meta-skill stage "
                                 "(EVOLVE's activation), and rounds with method dpo; null: no DPO stage")
    beta: float = Field(0.1, gt=0, allow_inf_nan=False, description="DPO's beta")

    @field_validator("feedback")
    @classmethod
    def _callable(cls, v: str | None) -> str | None:
        if v is not None and ":" not in v:
            raise ValueError(f"must look like 'package.module:function', got {v!r}")
        return v


# Both recipes keep only what the critic accepts: with `filter: none` EVOLVE's rounds also train on
# wrong answers, and on the quickstart's task its second round then fell below its first.
EVOLVE_DEFAULTS = {"inference": {"rounds": 2, "samples": 4, "keep_best": True}}


def with_recipe_defaults(data):
    """A raw spec whose recipe is self or evolve always has a self_evolution section; evolve's
    unset fields take EVOLVE_DEFAULTS."""
    if isinstance(data, dict) and data.get("recipe") in ("self", "evolve"):
        given = data.get("self_evolution") or {}
        if isinstance(given, dict):
            defaults = EVOLVE_DEFAULTS if data["recipe"] == "evolve" else {}
            data = {**data, "self_evolution": {**defaults, **given}}
    return data


def check_self_evolution(spec) -> None:
    """What the pipeline spec's schema alone cannot say about these recipes' settings."""
    evo, names = spec.self_evolution, [c.name for c in spec.critics]
    if evo is None:
        return
    if spec.recipe == "seft":
        raise ValueError("self_evolution is for recipe self or evolve; this spec's recipe is seft")
    if evo.critic is not None and evo.critic not in names:
        raise ValueError(f"self_evolution.critic {evo.critic!r} is not one of {names}")
    if spec.recipe == "self" and evo.feedback is None and evo.corpus is None:
        raise ValueError("recipe self learns from feedback: set self_evolution.feedback (a teacher) "
                         "or self_evolution.corpus (a meta-skill corpus with feedback)")
    if evo.method == "dpo" and evo.dpo is None:
        raise ValueError("self_evolution.method dpo needs self_evolution.dpo (its training)")
