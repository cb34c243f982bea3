"""SEFT's labelling rule (paper section 3.2; docs/architecture.md, "SEFT").

benefit = r(revised) - r(original)
  benefit > beta            -> [Major Revise]
  alpha <= benefit <= beta  -> [Minor Revise]
  benefit < alpha           -> [No Revise]
A [Minor Revise] or [No Revise] label stands with probability p; otherwise the sample becomes
`relabel_to` ([Major Revise] by default: the reviser is expected to improve with training).
The draw is a hash of (seed, item id), so a label does not depend on batch order or size."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import Enum


class Label(str, Enum):
    MAJOR = "[Major Revise]"
    MINOR = "[Minor Revise]"
    NO = "[No Revise]"

    @classmethod
    def from_name(cls, name: str) -> "Label":
        return {"major": cls.MAJOR, "minor": cls.MINOR, "no": cls.NO}[name]

    @property
    def short(self) -> str:
        return {Label.MAJOR: "major", Label.MINOR: "minor", Label.NO: "no"}[self]


LABEL_TOKENS = tuple(label.value for label in Label)  # added to a reviser's tokenizer as single tokens


@dataclass(frozen=True)
class Rule:
    alpha: float = 0.3
    beta: float = 1.0
    p: float = 0.8
    relabel_to: Label = Label.MAJOR
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "p"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if self.alpha > self.beta:
            raise ValueError(f"alpha ({self.alpha}) must not exceed beta ({self.beta})")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be within [0, 1], got {self.p}")


def threshold_label(benefit: float, alpha: float, beta: float) -> Label:
    if not math.isfinite(benefit):
        raise ValueError(f"benefit must be finite, got {benefit}")
    if benefit > beta:
        return Label.MAJOR
    if benefit >= alpha:
        return Label.MINOR
    return Label.NO


def uniform(seed: int, key: str) -> float:
    """A deterministic draw in [0, 1) from (seed, key)."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(benefit: float, item_id: str, rule: Rule) -> tuple[Label, bool]:
    """The training label for one sample, and whether the p-rule changed it."""
    label = threshold_label(benefit, rule.alpha, rule.beta)
    if label is Label.MAJOR or uniform(rule.seed, item_id) < rule.p:
        return label, False
    return rule.relabel_to, rule.relabel_to is not label
