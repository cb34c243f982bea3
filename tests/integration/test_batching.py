"""Dynamic batching on a real gRPC server: concurrent calls share backend batches and each gets
exactly its own results."""

from __future__ import annotations

import threading

import pytest

from seft.client import CriticClient, GeneratorClient
from seft.errors import SeftError
from seft.settings import Sampling
from seft_services.backends.critics import RuleCritic
from seft_services.backends.transformers_lm import CausalLM, TransformersGenerator
from seft_services.server import Server

pytestmark = pytest.mark.integration


class Recording:
    """Wraps a real backend and records the size of each backend call (a test instrument)."""

    def __init__(self, backend, fail_on: str | None = None):
        self.backend, self.fail_on, self.sizes = backend, fail_on, []

    def score(self, items):
        self.sizes.append(len(items))
        if self.fail_on and any(r == self.fail_on for _, r, *_ in items):  # items: (prompt, response, metadata)
            raise RuntimeError("backend failure")
        return self.backend.score(items)

    def generate(self, prompts, params, stop=None):
        self.sizes.append(len(prompts))
        return self.backend.generate(prompts, params, stop=stop)


def prompt(numbers):
    return [{"role": "user", "content": "Sort ascending : " + " ".join(map(str, numbers))}]


def in_threads(n, fn):
    results, errors = [None] * n, [None] * n
    start = threading.Barrier(n)

    def worker(i):
        start.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001
            errors[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_concurrent_calls_share_batches_and_get_their_own_results():
    critic = Recording(RuleCritic("seft.tasks.sorting:score"))
    srv = Server({"critic": critic}, batch_wait_ms=200).start()
    try:
        def call(i):
            # call i sends i % 3 + 1 items; item j of call i gets j + 1 of 4 positions right
            items = [(prompt([1, 2, 3, 4]), " ".join(["1", "2", "3", "4"][: j + 1] + ["9"] * (3 - j)))
                     for j in range(i % 3 + 1)]
            with CriticClient(srv.endpoint) as client:
                return client.score(items)

        results, errors = in_threads(16, call)
        assert errors == [None] * 16
        for i, got in enumerate(results):
            assert got == [(j + 1) / 4 for j in range(i % 3 + 1)]
        assert sum(critic.sizes) == sum(i % 3 + 1 for i in range(16))
        assert len(critic.sizes) < 16 and max(critic.sizes) > 3  # calls were merged
    finally:
        srv.stop(grace=1)


def test_batches_never_mix_sampling_parameters(base_model):
    gen = Recording(TransformersGenerator(CausalLM(str(base_model))))
    srv = Server({"generator": gen}, batch_wait_ms=200).start()
    try:
        def call(i):
            limit = 2 if i % 2 else 6
            with GeneratorClient(srv.endpoint) as client:
                stub_out = client.generate([prompt([i, 5, 3])], Sampling(max_new_tokens=limit, temperature=0.0))
            return limit, stub_out

        results, errors = in_threads(8, call)
        assert errors == [None] * 8
        for limit, [text] in results:
            assert len(text.split()) <= limit
        assert len(gen.sizes) >= 2 and sum(gen.sizes) == 8
    finally:
        srv.stop(grace=1)


def test_a_backend_failure_reaches_every_caller_of_that_batch_only():
    critic = Recording(RuleCritic("seft.tasks.sorting:score"), fail_on="boom")
    srv = Server({"critic": critic}, batch_wait_ms=200).start()
    try:
        def call(i):
            with CriticClient(srv.endpoint) as client:
                return client.score([(prompt([2, 1]), "boom" if i == 0 else "1 2")])

        _, errors = in_threads(4, call)
        assert all(isinstance(e, SeftError) and "INTERNAL" in str(e) for e in errors if e is not None)
        assert errors[0] is not None
        with CriticClient(srv.endpoint) as client:  # the server is fine afterwards
            assert client.score([(prompt([2, 1]), "1 2")]) == [1.0]
    finally:
        srv.stop(grace=1)


def test_batching_can_be_turned_off():
    critic = Recording(RuleCritic("seft.tasks.sorting:score"))
    srv = Server({"critic": critic}, batch_wait_ms=0).start()
    try:
        _, errors = in_threads(6, lambda i: CriticClient(srv.endpoint).score([(prompt([1]), "1")]))
        assert errors == [None] * 6 and critic.sizes == [1] * 6
    finally:
        srv.stop(grace=1)
