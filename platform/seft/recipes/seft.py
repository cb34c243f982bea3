"""SEFT (arXiv 2406.10813): prepare > warmup > label > adapt > internal > external > evaluate,
after an optional bootstrap (a demo task and models) or rank (preference data from prompts), and
with the paper's baselines
(baseline_revisers after adapt, baseline_policies after external) when the spec asks for them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from seft.settings import Model, Training


def modules(spec) -> list:
    """The recipe's stage modules, in order. (Imported here: stage modules import the pipeline
    spec, which is built from this module's settings.)"""
    from seft.stages import (adapt, baseline_policies, baseline_revisers, data_makers, evaluate, external, internal,
                             label, prepare, warmup)

    baselines = spec.baselines
    return data_makers(spec) + [prepare, warmup, label, adapt] + (
        [baseline_revisers] if baselines and baselines.revisers else []) + [internal, external] + (
        [baseline_policies] if baselines and baselines.policies else []) + [evaluate]


def stages(spec) -> list:
    return [mod.stage(spec) for mod in modules(spec)]


# -- the recipe's settings: the paper's baselines ---------------------------------------------
ReviserBaseline = Literal["aligner", "label"]
PolicyBaseline = Literal["sft_chosen", "dpo", "orpo", "sft_generator", "external_only"]


class BaselineTrainings(Model):
    aligner: Training | None = None
    label: Training | None = None
    sft_chosen: Training | None = None
    dpo: Training | None = None
    orpo: Training | None = None
    sft_generator: Training | None = None
    external_only: Training | None = None


class Baselines(Model):
    """The paper's baselines, trained on the same data by the same stages and evaluated beside
    SEFT. Revisers continue the preliminary reviser on the adaptive split, as the adaptive
    reviser does: `aligner` always revises (Aligner, no labels); `label` takes its labels from
    the original's rank alone (the paper's Appendix B). Policies start from the initial policy:
    `sft_chosen` (SFT on the preference data's best responses), `dpo` (TRL), `orpo` (TRL's
    experimental ORPO), `sft_generator` (SFT on the external generator's unrevised answers) and
    `external_only` (external evolution without internal evolution first): the paper's Table 2."""

    revisers: list[ReviserBaseline] = ["aligner", "label"]
    policies: list[PolicyBaseline] = ["sft_chosen", "dpo", "orpo", "sft_generator", "external_only"]
    no_revise_share: float = Field(0.1, ge=0, le=1, description="label reviser: the share of rank-0 originals "
                                   "labelled [No Revise]; the rest are [Major Revise] (Appendix B)")
    beta: float = Field(0.1, gt=0, allow_inf_nan=False, description="DPO's beta; ORPO's lambda")
    training: BaselineTrainings = Field(BaselineTrainings(),
                                        description="a baseline's training where it differs from reviser_training "
                                                    "(revisers) or policy_training (policies; DPO wants a "
                                                    "lower learning rate)")

    @field_validator("revisers", "policies")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat a baseline, got {v}")
        return v


def check_baselines(spec) -> None:
    """What the pipeline spec's schema alone cannot say about this recipe's settings."""
    if spec.baselines is not None and spec.recipe != "seft":
        raise ValueError(f"baselines are SEFT's; recipe {spec.recipe} has none")
