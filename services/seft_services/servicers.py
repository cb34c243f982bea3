"""gRPC glue: validate (protocol.py), call the backend, build the response. Bad input is
INVALID_ARGUMENT with the reason; a backend failure is INTERNAL with the request id.

Every method is planned once (`_plan_*`: validated items, the backend call, the response builder)
and served two ways: unary (one batch, at most `max_batch` items) and server-streaming (any number
of items, answered in chunks of `max_batch` as they finish). A call whose client cancelled or
whose deadline passed stops: between chunks, and inside generation (the backend's `stop`)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from seft.labelling import assign
from seft.pb import ENUM_OF
from seft.v1 import (common_pb2, critic_pb2, critic_pb2_grpc, generator_pb2, generator_pb2_grpc,
                     labeller_pb2, labeller_pb2_grpc, reviser_pb2, reviser_pb2_grpc)
from seft_services import protocol
from seft_services.metrics import Metrics
from seft_services.protocol import FailedPrecondition, InvalidArgument, Limits, Undecodable
from seft_services.refining import refine

log = logging.getLogger("seft.services")


def _final_code(context) -> str:
    if context.is_active():
        return "OK"
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"


def rpc(method):
    """Map validation errors to INVALID_ARGUMENT and backend errors to INTERNAL; count, time and
    track in flight every call. Works for unary methods and for streaming (generator) ones."""
    name = method.__name__

    @contextlib.contextmanager
    def observed(self, request, context):
        code = "OK"
        started = time.perf_counter()
        self.metrics.inflight.labels(name).inc()
        try:
            if isinstance(request, Undecodable):
                raise InvalidArgument(f"request: {request.reason}")
            yield
            code = _final_code(context)
        except GeneratorExit:  # gRPC closed a stream whose client went away
            code = "CANCELLED"
            raise
        except InvalidArgument as exc:
            code = "INVALID_ARGUMENT"
            log.info("invalid request id=%s method=%s reason=%s", request.request_id, name, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except FailedPrecondition as exc:
            code = "FAILED_PRECONDITION"
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except Exception as exc:  # noqa: BLE001 - any backend failure becomes a status
            code = _final_code(context)
            if code == "OK":
                code = "INTERNAL"
                log.exception("request id=%s method=%s failed", request.request_id, name)
                context.abort(grpc.StatusCode.INTERNAL, f"request {request.request_id!r}: {exc}")
        finally:
            self.metrics.inflight.labels(name).dec()
            self.metrics.requests.labels(name, code).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)

    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream(self, request, context):
            with observed(self, request, context):
                yield from method(self, request, context)
        return stream

    @functools.wraps(method)
    def unary(self, request, context):
        with observed(self, request, context):
            return method(self, request, context)
    return unary


@dataclass
class Plan:
    field: str                                       # the request's repeated field, for errors
    items: list                                      # validated inputs, one per result
    run: Callable[[list, Callable], list]            # (chunk, stop) -> results
    respond: Callable[[int, list], object]           # (offset, results) -> response message


def _usage(prompt_tokens: int, completion_tokens: int) -> common_pb2.Usage:
    return common_pb2.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def _pairs(items) -> list[tuple[list[dict], str, str, dict]]:
    out = []
    for i, item in enumerate(items):
        out.append((protocol.conversation(item.prompt, f"items[{i}].prompt"),
                    protocol.text(item.original, f"items[{i}].original", allow_empty=True),
                    protocol.text(item.revised, f"items[{i}].revised", allow_empty=True),
                    protocol.metadata(item.metadata, f"items[{i}].metadata")))
    return out


def _pair_scores(critic, pairs) -> list[common_pb2.PairScore]:
    rewards = critic.score([(p, o, m) for p, o, _, m in pairs] + [(p, r, m) for p, _, r, m in pairs])
    n = len(pairs)
    return [common_pb2.PairScore(reward_original=o, reward_revised=r, benefit=r - o)
            for o, r in zip(rewards[:n], rewards[n:])]


class _Servicer:
    def __init__(self, backend, limits: Limits, metrics: Metrics):
        self.backend, self.limits, self.metrics = backend, limits, metrics

    def _unary(self, method: str, plan: Plan, context):
        protocol.batch(plan.items, plan.field, self.limits)
        self.metrics.batch.labels(method).observe(len(plan.items))
        return plan.respond(0, plan.run(plan.items, _stopper(context, len(plan.items))))

    def _stream(self, method: str, plan: Plan, context):
        protocol.batch(plan.items, plan.field, None)
        size = self.limits.max_batch
        for start in range(0, len(plan.items), size):
            if not context.is_active():
                return
            chunk = plan.items[start:start + size]
            self.metrics.batch.labels(method).observe(len(chunk))
            yield plan.respond(start, plan.run(chunk, _stopper(context, len(chunk))))


def _stopper(context, n: int) -> Callable[[], list[bool]]:
    """The backend's per-item stop signal: all items stop when the call is no longer active."""
    return lambda: [not context.is_active()] * n


class GeneratorServicer(_Servicer, generator_pb2_grpc.GeneratorServicer):
    """critic: the backend that scores answers for self-refinement's samples and keep_best."""

    def __init__(self, backend, limits: Limits, metrics: Metrics, critic=None):
        super().__init__(backend, limits, metrics)
        self.critic = critic

    def _plan(self, request) -> Plan:
        prompts = [protocol.conversation(p.messages, f"prompts[{i}].messages") for i, p in enumerate(request.prompts)]
        params = protocol.sampling(request.sampling, self.limits)
        opts = protocol.refine(request.refine, self.limits, self.critic is not None)
        refining = opts.rounds > 0 or opts.samples > 1

        def run(chunk, stop):
            outs = (refine(self.backend, self.critic, chunk, params, opts, stop) if refining
                    else self.backend.generate(chunk, params, stop=stop))
            self.metrics.tokens.labels("Generate").inc(sum(o.completion_tokens for o in outs))
            return outs

        def respond(offset, outs):
            return generator_pb2.GenerateResponse(request_id=request.request_id, offset=offset, generations=[
                generator_pb2.Generation(text=o.text, usage=_usage(o.prompt_tokens, o.completion_tokens),
                                         steps=[generator_pb2.RefinementStep(
                                             text=s.text, feedback=s.feedback, reward=s.reward, kept=s.kept)
                                             for s in getattr(o, "steps", ())])
                for o in outs])
        return Plan("prompts", prompts, run, respond)

    @rpc
    def Generate(self, request, context):
        return self._unary("Generate", self._plan(request), context)

    @rpc
    def GenerateStream(self, request, context):
        yield from self._stream("GenerateStream", self._plan(request), context)


class ReviserServicer(_Servicer, reviser_pb2_grpc.ReviserServicer):
    def _plan(self, request) -> Plan:
        items = [(protocol.conversation(it.prompt, f"items[{i}].prompt"),
                  protocol.text(it.original, f"items[{i}].original", allow_empty=True))  # an empty draft is revisable
                 for i, it in enumerate(request.items)]
        params = protocol.sampling(request.sampling, self.limits)

        def run(chunk, stop):
            outs = self.backend.revise(chunk, params, request.force_revise, stop=stop)
            self.metrics.tokens.labels("Revise").inc(sum(o.completion_tokens for o in outs))
            for o in outs:
                self.metrics.labels.labels(o.label.short if o.label else "none").inc()
            return outs

        def respond(offset, outs):
            return reviser_pb2.ReviseResponse(request_id=request.request_id, offset=offset, revisions=[
                reviser_pb2.Revision(label=ENUM_OF.get(o.label, common_pb2.REVISION_LABEL_UNSPECIFIED),
                                     text=o.text, revised=o.revised, usage=_usage(o.prompt_tokens, o.completion_tokens))
                for o in outs])
        return Plan("items", items, run, respond)

    @rpc
    def Revise(self, request, context):
        return self._unary("Revise", self._plan(request), context)

    @rpc
    def ReviseStream(self, request, context):
        yield from self._stream("ReviseStream", self._plan(request), context)


class CriticServicer(_Servicer, critic_pb2_grpc.CriticServicer):
    def _plan_score(self, request) -> Plan:
        items = [(protocol.conversation(it.prompt, f"items[{i}].prompt"),
                  protocol.text(it.response, f"items[{i}].response", allow_empty=True),
                  protocol.metadata(it.metadata, f"items[{i}].metadata"))
                 for i, it in enumerate(request.items)]
        return Plan("items", items, lambda chunk, stop: self.backend.score(chunk),
                     lambda offset, rewards: critic_pb2.ScoreResponse(request_id=request.request_id, offset=offset,
                                                                      rewards=rewards))

    def _plan_pairs(self, request) -> Plan:
        return Plan("items", _pairs(request.items), lambda chunk, stop: _pair_scores(self.backend, chunk),
                     lambda offset, scores: critic_pb2.ScorePairsResponse(request_id=request.request_id,
                                                                          offset=offset, scores=scores))

    @rpc
    def Score(self, request, context):
        return self._unary("Score", self._plan_score(request), context)

    @rpc
    def ScoreStream(self, request, context):
        yield from self._stream("ScoreStream", self._plan_score(request), context)

    @rpc
    def ScorePairs(self, request, context):
        return self._unary("ScorePairs", self._plan_pairs(request), context)

    @rpc
    def ScorePairsStream(self, request, context):
        yield from self._stream("ScorePairsStream", self._plan_pairs(request), context)


class LabellerServicer(_Servicer, labeller_pb2_grpc.LabellerServicer):
    """Scores each (original, revised) pair with its critic (the backend) and applies SEFT's
    labelling rule."""

    def _plan(self, request) -> Plan:
        rule = protocol.label_rule(request.rule, request.HasField("rule"))
        ids = [protocol.text(it.id, f"items[{i}].id") for i, it in enumerate(request.items)]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("items: ids must be unique within a request")

        def run(chunk, stop):
            results = []
            for (item_id, *pair), score in zip(chunk, _pair_scores(self.backend, [pair for _, *pair in chunk])):
                label, relabelled = assign(score.benefit, item_id, rule)
                results.append(labeller_pb2.LabelResult(id=item_id, score=score, label=ENUM_OF[label],
                                                        relabelled=relabelled))
            return results

        return Plan("items", [(i, *pair) for i, pair in zip(ids, _pairs(request.items))], run,
                     lambda offset, results: labeller_pb2.LabelResponse(request_id=request.request_id,
                                                                        offset=offset, results=results))

    @rpc
    def Label(self, request, context):
        return self._unary("Label", self._plan(request), context)

    @rpc
    def LabelStream(self, request, context):
        yield from self._stream("LabelStream", self._plan(request), context)
