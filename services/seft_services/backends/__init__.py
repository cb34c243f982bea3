"""Model backends behind the services. Each takes plain Python values (validated requests)."""

from dataclasses import dataclass

from seft.labelling import Label


class Cancelled(Exception):
    """The call's client cancelled, or its deadline passed: its work was stopped."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Revision:
    label: Label | None  # None: a reviser trained without labels
    text: str
    revised: bool
    prompt_tokens: int
    completion_tokens: int
