"""Request validation: proto messages in, plain Python values out, or InvalidArgument with a
reason that names the field. Servicers turn InvalidArgument into INVALID_ARGUMENT."""

from __future__ import annotations

import json

import math
from dataclasses import dataclass

from seft.labelling import Rule
from seft.settings import MAX_NEW_TOKENS
from seft.spec import SERVICE_MAX_BATCH, SERVICE_MAX_NEW_TOKENS
from seft.pb import LABEL_OF

ROLES = ("system", "user", "assistant")


class InvalidArgument(ValueError):
    pass


class FailedPrecondition(Exception):
    """A valid request this server is not set up to answer."""


@dataclass(frozen=True)
class Undecodable:
    """A request whose bytes did not parse (e.g. invalid UTF-8 in a string field): the servicer
    answers INVALID_ARGUMENT with the reason instead of gRPC's bare INTERNAL."""

    reason: str
    request_id: str = ""


def decoder(parse):
    """A request deserializer that never raises: undecodable bytes become an Undecodable."""
    from google.protobuf.message import DecodeError

    def decode(data: bytes):
        try:
            return parse(data)
        except DecodeError as exc:
            return Undecodable(str(exc))
    return decode


@dataclass(frozen=True)
class Limits:
    max_batch: int = SERVICE_MAX_BATCH
    max_new_tokens: int = SERVICE_MAX_NEW_TOKENS
    max_refine_rounds: int = 8
    max_samples: int = 16


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


def batch(items, field: str, limits: Limits | None) -> None:
    """limits None: a streaming call, which has no batch limit."""
    if len(items) == 0:
        raise InvalidArgument(f"{field}: empty batch")
    if limits is not None and len(items) > limits.max_batch:
        raise InvalidArgument(f"{field}: batch of {len(items)} exceeds the limit of {limits.max_batch}")


def conversation(msgs, field: str) -> list[dict]:
    if len(msgs) == 0:
        raise InvalidArgument(f"{field}: empty prompt")
    out = []
    for i, m in enumerate(msgs):
        if m.role not in ROLES:
            raise InvalidArgument(f"{field}[{i}].role: {m.role!r} is not one of {', '.join(ROLES)}")
        out.append({"role": m.role, "content": m.content})
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise InvalidArgument(f"{field}: needs a non-empty user message")
    return out


def metadata(value: str, field: str) -> dict:
    """An item's optional metadata: a JSON object ("" for none)."""
    if not value:
        return {}
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{field}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{field}: must be a JSON object, got {type(data).__name__}")
    return data


def text(value: str, field: str, allow_empty: bool = False) -> str:
    if not allow_empty and not value.strip():
        raise InvalidArgument(f"{field}: empty")
    return value


def sampling(params, limits: Limits) -> SamplingParams:
    default = SamplingParams()
    max_new = params.max_new_tokens if params.HasField("max_new_tokens") else min(default.max_new_tokens,
                                                                                   limits.max_new_tokens)
    if not 1 <= max_new <= limits.max_new_tokens:
        raise InvalidArgument(f"sampling.max_new_tokens: {max_new} is outside 1..{limits.max_new_tokens}")
    temperature = params.temperature if params.HasField("temperature") else default.temperature
    if not math.isfinite(temperature) or temperature < 0:
        raise InvalidArgument(f"sampling.temperature: {temperature} must be finite and >= 0")
    top_p = params.top_p if params.HasField("top_p") else default.top_p
    if not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise InvalidArgument(f"sampling.top_p: {top_p} must be within (0, 1]")
    return SamplingParams(max_new, temperature, top_p, params.seed if params.HasField("seed") else None)


@dataclass(frozen=True)
class RefineParams:
    rounds: int = 0
    samples: int = 1
    keep_best: bool = False


def refine(params, limits: Limits, has_critic: bool) -> RefineParams:
    """The generator's self-refinement options. A critic-less server cannot pick the best of
    several samples or keep the best step: that is FAILED_PRECONDITION, not a bad request."""
    out = RefineParams(params.rounds, max(1, params.samples), params.keep_best)
    if out.rounds > limits.max_refine_rounds:
        raise InvalidArgument(f"refine.rounds: {out.rounds} is outside 0..{limits.max_refine_rounds}")
    if out.samples > limits.max_samples:
        raise InvalidArgument(f"refine.samples: {out.samples} is outside 1..{limits.max_samples}")
    if not has_critic and (out.samples > 1 or out.keep_best):
        raise FailedPrecondition("refine.samples > 1 and refine.keep_best need a critic: start the generator "
                                 "with one (seft serve generator --critic ...)")
    return out


def label_rule(rule, present: bool) -> Rule:
    if not present:
        raise InvalidArgument("rule: required")
    if rule.relabel_to not in LABEL_OF:
        raise InvalidArgument(f"rule.relabel_to: {rule.relabel_to} is not a revision label")
    try:
        return Rule(rule.alpha, rule.beta, rule.p, LABEL_OF[rule.relabel_to], rule.seed)
    except ValueError as exc:
        raise InvalidArgument(f"rule: {exc}") from None
