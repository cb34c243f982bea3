"""gRPC glue: validate (protocol.py), call the backend, build the response. Bad input is
INVALID_ARGUMENT with the reason; a backend failure is INTERNAL with the request id."""

from __future__ import annotations

import functools
import logging
import time

import grpc

from seft.labelling import assign
from seft.pb import ENUM_OF
from seft.v1 import (common_pb2, critic_pb2, critic_pb2_grpc, generator_pb2, generator_pb2_grpc,
                     labeller_pb2, labeller_pb2_grpc, reviser_pb2, reviser_pb2_grpc)
from seft_services import protocol
from seft_services.metrics import Metrics
from seft_services.protocol import InvalidArgument, Limits

log = logging.getLogger("seft.services")


def rpc(method):
    """Map validation errors to INVALID_ARGUMENT and backend errors to INTERNAL; count and time
    every call."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self, request, context):
        code = "OK"
        started = time.perf_counter()
        try:
            return method(self, request, context)
        except InvalidArgument as exc:
            code = "INVALID_ARGUMENT"
            log.info("invalid request id=%s method=%s reason=%s", request.request_id, name, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # noqa: BLE001 - any backend failure becomes a status
            code = "INTERNAL"
            log.exception("request id=%s method=%s failed", request.request_id, name)
            context.abort(grpc.StatusCode.INTERNAL, f"request {request.request_id!r}: {exc}")
        finally:
            self.metrics.requests.labels(name, code).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)

    return wrapper


class _Servicer:
    def __init__(self, backend, limits: Limits, metrics: Metrics):
        self.backend, self.limits, self.metrics = backend, limits, metrics

    def _batch(self, items, field: str, method: str) -> None:
        protocol.batch(items, field, self.limits)
        self.metrics.batch.labels(method).observe(len(items))


def _usage(prompt_tokens: int, completion_tokens: int) -> common_pb2.Usage:
    return common_pb2.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def _pair_items(items) -> tuple[list, list]:
    originals, revisions = [], []
    for i, item in enumerate(items):
        prompt = protocol.conversation(item.prompt, f"items[{i}].prompt")
        originals.append((prompt, protocol.text(item.original, f"items[{i}].original", allow_empty=True)))
        revisions.append((prompt, protocol.text(item.revised, f"items[{i}].revised", allow_empty=True)))
    return originals, revisions


def _pair_scores(critic, originals, revisions) -> list[common_pb2.PairScore]:
    rewards = critic.score(originals + revisions)
    n = len(originals)
    return [common_pb2.PairScore(reward_original=o, reward_revised=r, benefit=r - o)
            for o, r in zip(rewards[:n], rewards[n:])]


class GeneratorServicer(_Servicer, generator_pb2_grpc.GeneratorServicer):
    @rpc
    def Generate(self, request, context):
        self._batch(request.prompts, "prompts", "Generate")
        prompts = [protocol.conversation(p.messages, f"prompts[{i}].messages")
                   for i, p in enumerate(request.prompts)]
        params = protocol.sampling(request.sampling, self.limits)
        outs = self.backend.generate(prompts, params)
        self.metrics.tokens.labels("Generate").inc(sum(o.completion_tokens for o in outs))
        return generator_pb2.GenerateResponse(request_id=request.request_id, generations=[
            generator_pb2.Generation(text=o.text, usage=_usage(o.prompt_tokens, o.completion_tokens))
            for o in outs])


class ReviserServicer(_Servicer, reviser_pb2_grpc.ReviserServicer):
    @rpc
    def Revise(self, request, context):
        self._batch(request.items, "items", "Revise")
        items = [(protocol.conversation(it.prompt, f"items[{i}].prompt"),
                  protocol.text(it.original, f"items[{i}].original", allow_empty=True))  # an empty draft is revisable
                 for i, it in enumerate(request.items)]
        params = protocol.sampling(request.sampling, self.limits)
        outs = self.backend.revise(items, params, request.force_revise)
        self.metrics.tokens.labels("Revise").inc(sum(o.completion_tokens for o in outs))
        for o in outs:
            self.metrics.labels.labels(o.label.short if o.label else "none").inc()
        return reviser_pb2.ReviseResponse(request_id=request.request_id, revisions=[
            reviser_pb2.Revision(label=ENUM_OF.get(o.label, common_pb2.REVISION_LABEL_UNSPECIFIED),
                                 text=o.text, revised=o.revised,
                                 usage=_usage(o.prompt_tokens, o.completion_tokens)) for o in outs])


class CriticServicer(_Servicer, critic_pb2_grpc.CriticServicer):
    @rpc
    def Score(self, request, context):
        self._batch(request.items, "items", "Score")
        items = [(protocol.conversation(it.prompt, f"items[{i}].prompt"),
                  protocol.text(it.response, f"items[{i}].response", allow_empty=True))
                 for i, it in enumerate(request.items)]
        return critic_pb2.ScoreResponse(request_id=request.request_id, rewards=self.backend.score(items))

    @rpc
    def ScorePairs(self, request, context):
        self._batch(request.items, "items", "ScorePairs")
        scores = _pair_scores(self.backend, *_pair_items(request.items))
        return critic_pb2.ScorePairsResponse(request_id=request.request_id, scores=scores)


class LabellerServicer(_Servicer, labeller_pb2_grpc.LabellerServicer):
    """Scores each (original, revised) pair with its critic (the backend) and applies SEFT's
    labelling rule."""

    @rpc
    def Label(self, request, context):
        self._batch(request.items, "items", "Label")
        rule = protocol.label_rule(request.rule, request.HasField("rule"))
        ids = [protocol.text(it.id, f"items[{i}].id") for i, it in enumerate(request.items)]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("items: ids must be unique within a request")
        scores = _pair_scores(self.backend, *_pair_items(request.items))
        results = []
        for item_id, score in zip(ids, scores):
            label, relabelled = assign(score.benefit, item_id, rule)
            results.append(labeller_pb2.LabelResult(id=item_id, score=score, label=ENUM_OF[label],
                                                    relabelled=relabelled))
        return labeller_pb2.LabelResponse(request_id=request.request_id, results=results)
