"""Typed gRPC clients. Stages reach the services only through these, on every executor.

Each call takes any number of items and sends them in batches of `batch_size`; `on_batch`
(called with the number of items done) drives a progress bar. An endpoint is host:port, or a
comma-separated list of IP:port (a service's replicas): then calls go round robin over the
replicas, one batch in flight per replica. UNAVAILABLE is retried with backoff by gRPC's own
retry policy (on another replica, where there is one); with $SEFT_RECONNECT_S set (the
operator's stage pods: their services' pods can be replaced), a batch refused by a service going
away (UNAVAILABLE or CANCELLED) waits up to that long for the service to come back and is sent
again, so no item is lost.
`ReviserClient.revise_stream` sends everything in one server-streaming call and yields revisions as
their chunks arrive."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from seft.errors import SeftError
from seft.labelling import Label, Rule
from seft.pb import ENUM_OF, LABEL_OF, messages
from seft.refinement import Step
from seft.recipes.self_evolution import Refine
from seft.settings import Sampling
from seft.v1 import (common_pb2, critic_pb2, critic_pb2_grpc, generator_pb2, generator_pb2_grpc,
                     labeller_pb2, labeller_pb2_grpc, reviser_pb2, reviser_pb2_grpc)

_RETRY = json.dumps({"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [{
    "name": [{"service": f"seft.v1.{s}"} for s in ("Generator", "Reviser", "Critic", "Labeller")],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "5s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})
# How a service that is going away refuses a call: UNAVAILABLE, or CANCELLED for a call gRPC had
# received but not yet handed to it (these clients never cancel their own unary calls).
_GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


@dataclass(frozen=True)
class ClientTLS:
    """PEM files: the CA that signed the server's certificate, and for mutual TLS the client's
    own certificate and key."""

    ca: str
    cert: str | None = None
    key: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


def channel(endpoint: str, tls: ClientTLS | None = None, max_message_bytes: int = 64 << 20) -> grpc.Channel:
    """host:port, or IP:port,IP:port,... for a service's replicas (balanced round robin)."""
    if "," in endpoint:
        endpoint = f"ipv4:{endpoint}"
    options = [("grpc.service_config", _RETRY), ("grpc.enable_retries", 1),
               ("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    if tls is not None:
        return grpc.secure_channel(endpoint, tls.credentials(), options=options)
    return grpc.insecure_channel(endpoint, options=options)


def _sampling(s: Sampling | None, seed: int | None) -> common_pb2.SamplingParams:
    out = common_pb2.SamplingParams()
    if s is not None:
        out.max_new_tokens, out.temperature, out.top_p = s.max_new_tokens, s.temperature, s.top_p
    if seed is not None:
        out.seed = seed
    return out


@dataclass(frozen=True)
class Revised:
    label: Label | None
    text: str
    revised: bool
    completion_tokens: int


@dataclass(frozen=True)
class Labelled:
    reward_original: float
    reward_revised: float
    benefit: float
    label: Label
    relabelled: bool


class _Client:
    def __init__(self, endpoint: str, timeout: float = 600.0, batch_size: int = 64, tls: ClientTLS | None = None):
        self.endpoint, self.timeout, self.batch_size = endpoint, timeout, batch_size
        self.channel = channel(endpoint, tls)
        self.in_flight = endpoint.count(",") + 1
        self.reconnect_s = float(os.environ.get("SEFT_RECONNECT_S", "0"))

    def _send(self, call: Callable[[Sequence, int], list], chunk: Sequence, start: int) -> list:
        deadline = None
        while True:
            try:
                return call(chunk, start)
            except grpc.RpcError as exc:
                error = exc
            now = time.monotonic()
            deadline = deadline or now + self.reconnect_s
            if error.code() not in _GONE or now >= deadline:
                raise SeftError(f"{type(self).__name__} at {self.endpoint}: {error.code().name}: {error.details()} "
                                f"(items {start}..{start + len(chunk) - 1})") from None
            try:  # the service's pod is being replaced: wait for it, then send the batch again
                grpc.channel_ready_future(self.channel).result(timeout=deadline - now)
            except grpc.FutureTimeoutError:
                pass

    def _batched(self, items: Sequence, call: Callable[[Sequence, int], list],
                 on_batch: Callable[[int], None] | None) -> list:
        """The batches in order, up to one in flight per replica."""
        chunks = [(s, items[s:s + self.batch_size]) for s in range(0, len(items), self.batch_size)]
        out: list = []

        def collect(results) -> list:  # results: each chunk's, in order, as they are awaited
            for (_, chunk), result in zip(chunks, results):
                out.extend(result)
                if on_batch:
                    on_batch(len(chunk))
            return out

        if len(chunks) == 1 or self.in_flight == 1:  # nothing to overlap: no threads to start
            return collect(self._send(call, c, s) for s, c in chunks)
        with ThreadPoolExecutor(self.in_flight) as pool:
            try:
                return collect(f.result() for f in [pool.submit(self._send, call, c, s) for s, c in chunks])
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GeneratorClient(_Client):
    def _call(self, prompts, sampling, seed, refine: Refine | None, on_batch) -> list:
        stub = generator_pb2_grpc.GeneratorStub(self.channel)
        opts = generator_pb2.RefineParams(**refine.model_dump()) if refine is not None else None

        def call(chunk, start):
            req = generator_pb2.GenerateRequest(
                request_id=uuid.uuid4().hex, prompts=[generator_pb2.Prompt(messages=messages(p)) for p in chunk],
                sampling=_sampling(sampling, None if seed is None else seed + start), refine=opts)
            return list(stub.Generate(req, timeout=self.timeout).generations)

        return self._batched(prompts, call, on_batch)

    def generate(self, prompts: Sequence[list[dict]], sampling: Sampling | None = None,
                 seed: int | None = None, on_batch=None) -> list[str]:
        return [g.text for g in self._call(prompts, sampling, seed, None, on_batch)]

    def refine(self, prompts: Sequence[list[dict]], refine: Refine, sampling: Sampling | None = None,
               seed: int | None = None, on_batch=None) -> list[list[Step]]:
        """Each prompt's refinement chain (seft.refinement): the answer, then each refinement."""
        return [[Step(s.text, s.feedback if s.HasField("feedback") else None,
                      s.reward if s.HasField("reward") else None, s.kept) for s in g.steps]
                for g in self._call(prompts, sampling, seed, refine, on_batch)]


def _revised(r: reviser_pb2.Revision) -> Revised:
    return Revised(LABEL_OF.get(r.label), r.text, r.revised, r.usage.completion_tokens)


class ReviserClient(_Client):
    @staticmethod
    def _request(items, sampling, seed, force_revise) -> reviser_pb2.ReviseRequest:
        return reviser_pb2.ReviseRequest(
            request_id=uuid.uuid4().hex, sampling=_sampling(sampling, seed), force_revise=force_revise,
            items=[reviser_pb2.RevisionItem(prompt=messages(p), original=o) for p, o in items])

    def revise(self, items: Sequence[tuple[list[dict], str]], sampling: Sampling | None = None,
               seed: int | None = None, on_batch=None, force_revise: bool = False) -> list[Revised]:
        stub = reviser_pb2_grpc.ReviserStub(self.channel)

        def call(chunk, start):
            req = self._request(chunk, sampling, None if seed is None else seed + start, force_revise)
            return [_revised(r) for r in stub.Revise(req, timeout=self.timeout).revisions]

        return self._batched(items, call, on_batch)

    def revise_stream(self, items: Sequence[tuple[list[dict], str]], sampling: Sampling | None = None,
                      seed: int | None = None, force_revise: bool = False) -> Iterator[Revised]:
        """One streaming call for all items (the server answers in chunks); yields in order."""
        stub = reviser_pb2_grpc.ReviserStub(self.channel)
        done = 0
        try:
            for chunk in stub.ReviseStream(self._request(items, sampling, seed, force_revise), timeout=self.timeout):
                for r in chunk.revisions:
                    done += 1
                    yield _revised(r)
        except grpc.RpcError as exc:
            raise SeftError(f"{type(self).__name__} at {self.endpoint}: {exc.code().name}: {exc.details()} "
                            f"(after {done} of {len(items)} items)") from None


def _metadata(extra: list) -> str:
    """An item's optional last element, its metadata, as the wire's JSON object ("" for none)."""
    return json.dumps(extra[0]) if extra and extra[0] else ""


class CriticClient(_Client):
    def score(self, items: Sequence[tuple], on_batch=None) -> list[float]:
        """items: (prompt, response) or (prompt, response, metadata)."""
        stub = critic_pb2_grpc.CriticStub(self.channel)

        def call(chunk, start):
            req = critic_pb2.ScoreRequest(request_id=uuid.uuid4().hex, items=[
                critic_pb2.ScoreItem(prompt=messages(p), response=r, metadata=_metadata(m)) for p, r, *m in chunk])
            return list(stub.Score(req, timeout=self.timeout).rewards)

        return self._batched(items, call, on_batch)


class LabellerClient(_Client):
    def label(self, items: Sequence[tuple], rule: Rule, on_batch=None) -> list[Labelled]:
        """items: (id, prompt, original, revised), or with the record's metadata last."""
        stub = labeller_pb2_grpc.LabellerStub(self.channel)
        pb_rule = labeller_pb2.LabelRule(alpha=rule.alpha, beta=rule.beta, p=rule.p,
                                         relabel_to=ENUM_OF[rule.relabel_to], seed=rule.seed)

        def call(chunk, start):
            req = labeller_pb2.LabelRequest(request_id=uuid.uuid4().hex, rule=pb_rule, items=[
                labeller_pb2.LabelItem(id=i, prompt=messages(p), original=o, revised=r, metadata=_metadata(m))
                for i, p, o, r, *m in chunk])
            return [Labelled(x.score.reward_original, x.score.reward_revised, x.score.benefit,
                             LABEL_OF[x.label], x.relabelled)
                    for x in stub.Label(req, timeout=self.timeout).results]

        return self._batched(items, call, on_batch)
