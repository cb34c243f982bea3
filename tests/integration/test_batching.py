"""Dynamic batching on a real gRPC server: concurrent calls that arrive while the backend is busy
share its next batch and each gets exactly its own results; a call that finds it idle starts at once."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from seft.client import CriticClient, GeneratorClient
from seft.errors import SeftError
from seft.settings import Sampling
from seft_services.backends.critics import RuleCritic
from seft_services.backends.transformers_lm import CausalLM, TransformersGenerator
from seft_services.batching import DynamicBatcher
from seft_services.server import Server

pytestmark = pytest.mark.integration


class Recording:
    """Wraps a real backend and records the size of each backend call (a test instrument). With
    `hold`, its first call waits until the test opens `gate`: the backend is busy while the test's
    other calls arrive."""

    def __init__(self, backend, fail_on: str | None = None, hold: bool = False):
        self.backend, self.fail_on, self.sizes, self.params = backend, fail_on, [], []
        self.gate = threading.Event()
        if not hold:
            self.gate.set()

    def score(self, items):
        self._enter(len(items))
        if self.fail_on and any(r == self.fail_on for _, r, *_ in items):  # items: (prompt, response, metadata)
            self.failed_size = len(items)
            raise RuntimeError("backend failure")
        return self.backend.score(items)

    def generate(self, prompts, params, stop=None):
        self._enter(len(prompts))
        self.params.append(params)
        return self.backend.generate(prompts, params, stop=stop)

    def _enter(self, size: int) -> None:
        self.sizes.append(size)
        assert self.gate.wait(timeout=60), "the test never opened the gate"


def wait_for(condition) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def open_when_all_arrived(srv, kind: str, method: str, backend, items: int) -> None:
    """Opens the backend's gate once all `items` have arrived: in its first batch, where the gate
    holds them, or waiting while it is busy (in the batcher's queue, or held back from the first
    batch for their other parameters)."""
    batcher = srv.backends[kind].batchers[method]

    def waiting() -> int:
        return sum(len(c.items) for c in list(batcher.queue.queue) + list(batcher.held))

    wait_for(lambda: backend.sizes and backend.sizes[0] + waiting() == items)
    backend.gate.set()


def prompt(numbers):
    return [{"role": "user", "content": "Sort ascending : " + " ".join(map(str, numbers))}]


def in_threads(n, fn, while_running=None):
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
    if while_running:
        while_running()
    for t in threads:
        t.join()
    return results, errors


def test_calls_that_arrive_while_the_backend_is_busy_share_one_batch_and_get_their_own_results():
    critic = Recording(RuleCritic("seft.tasks.sorting:score"), hold=True)
    srv = Server({"critic": critic}).start()
    try:
        def call(i):
            # call i sends i % 3 + 1 items; item j of call i gets j + 1 of 4 positions right
            items = [(prompt([1, 2, 3, 4]), " ".join(["1", "2", "3", "4"][: j + 1] + ["9"] * (3 - j)))
                     for j in range(i % 3 + 1)]
            with CriticClient(srv.endpoint) as client:
                return client.score(items)

        total = sum(i % 3 + 1 for i in range(16))
        results, errors = in_threads(16, call, lambda: open_when_all_arrived(srv, "critic", "score", critic, total))
        assert errors == [None] * 16
        for i, got in enumerate(results):
            assert got == [(j + 1) / 4 for j in range(i % 3 + 1)]
        # the first batch, then every call that came while it ran, in one batch
        assert len(critic.sizes) == 2 and sum(critic.sizes) == total
    finally:
        srv.stop(grace=1)


def test_batches_never_mix_sampling_parameters(base_model):
    gen = Recording(TransformersGenerator(CausalLM(str(base_model))), hold=True)
    srv = Server({"generator": gen}).start()
    try:
        def call(i):
            limit = 2 if i % 2 else 6
            with GeneratorClient(srv.endpoint) as client:
                stub_out = client.generate([prompt([i, 5, 3])], Sampling(max_new_tokens=limit, temperature=0.0))
            return limit, stub_out

        results, errors = in_threads(8, call, lambda: open_when_all_arrived(srv, "generator", "generate", gen, 8))
        assert errors == [None] * 8
        for limit, [text] in results:
            assert len(text.split()) <= limit
        # the first batch, then the calls that came while it ran, one batch for each limit; each
        # batch ran with its callers' limit: four callers asked for 2 tokens and four for 6
        assert len(gen.sizes) <= 3
        by_limit = {limit: sum(n for n, p in zip(gen.sizes, gen.params) if p.max_new_tokens == limit)
                    for limit in (2, 6)}
        assert by_limit == {2: 4, 6: 4}
    finally:
        srv.stop(grace=1)


def test_a_backend_failure_reaches_every_caller_of_that_batch_only():
    critic = Recording(RuleCritic("seft.tasks.sorting:score"), fail_on="boom", hold=True)
    srv = Server({"critic": critic}).start()
    try:
        def call(i):
            with CriticClient(srv.endpoint) as client:
                return client.score([(prompt([2, 1]), "boom" if i == 0 else "1 2")])

        _, errors = in_threads(4, call, lambda: open_when_all_arrived(srv, "critic", "score", critic, 4))
        failed = [e for e in errors if e is not None]
        assert all(isinstance(e, SeftError) and "INTERNAL" in str(e) for e in failed)
        assert errors[0] is not None and len(failed) == critic.failed_size  # its batch's callers, no other
        assert len(critic.sizes) <= 2 and sum(critic.sizes) == 4
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


def test_a_stopped_server_ends_its_batching_threads():
    """Each batcher's thread holds its backend (a model, on a service): it ends with the server."""
    critic = Recording(RuleCritic("seft.tasks.sorting:score"))
    srv = Server({"critic": critic}).start()
    threads = [b.thread for b in srv.backends["critic"].batchers.values()]
    try:
        with CriticClient(srv.endpoint) as client:
            assert client.score([(prompt([2, 1]), "1 2")]) == [1.0]
        assert threads and all(t.is_alive() for t in threads)
    finally:
        srv.stop(grace=1)
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)


def test_a_lone_call_never_waits_for_the_batching_budget():
    """With a 10-minute budget, lone calls (one, then another after it) still return at once: the
    budget is only spent waiting for callers of a batch that had several."""
    critic = Recording(RuleCritic("seft.tasks.sorting:score"))
    srv = Server({"critic": critic}, batch_wait_ms=600_000).start()
    try:
        _, errors = in_threads(1, lambda i: [CriticClient(srv.endpoint, timeout=60).score([(prompt([1]), "1")])
                                             for _ in range(2)])
        assert errors == [None] and critic.sizes == [1, 1]
    finally:
        srv.stop(grace=1)


def test_callers_coming_back_after_a_batch_join_one_batch():
    """Four callers, each calling again as soon as its result is back: their second calls make one
    batch, though they arrive one by one (the batcher waits for as many as the last batch had, and
    those queued when it ended). The lone first caller does not call again: the batch after its own
    waits the whole budget (2 s here) for it, then runs with the four."""
    sizes, gate = [], threading.Event()

    def run(items, key, stop):
        sizes.append(len(items))
        assert gate.wait(timeout=60)
        return items

    batcher = DynamicBatcher(run, max_items=64, max_wait_s=2)
    first = threading.Thread(target=batcher.submit, args=(["lone"],))
    first.start()
    wait_for(lambda: sizes)  # the backend is busy with the lone call
    results, errors = in_threads(4, lambda i: [batcher.submit([f"{i}-{k}"]) for k in range(2)],
                                 lambda: (wait_for(lambda: batcher.queue.qsize() == 4), gate.set()))
    first.join()
    assert errors == [None] * 4 and results == [[[f"{i}-0"], [f"{i}-1"]] for i in range(4)]
    assert sizes == [1, 4, 4]


def test_after_a_long_batch_its_callers_have_half_its_time_to_come_back(monkeypatch):
    """A 1 ms budget is less than a long batch's callers need to come back: after a batch that
    took 100 s (by a test double of the batcher's clock) the next one waits up to 50 s for them.
    The test sends their next calls one at a time, each only once the batcher has taken the one
    before (and then some 10 ms later), and they still make one batch."""
    from seft_services import batching

    now = [0.0]
    monkeypatch.setattr(batching, "time", SimpleNamespace(monotonic=lambda: now[0]))
    sizes, gate = [], threading.Event()
    go_on = [threading.Event() for _ in range(4)]

    def run(items, key, stop):
        sizes.append(len(items))
        if len(sizes) == 1:  # the lone call: the backend is busy while the four queue up
            assert gate.wait(timeout=60)
        elif len(sizes) == 2:
            now[0] += 100.0  # the four's batch takes 100 s
        return items

    def caller(i):
        first = batcher.submit([f"{i}-0"])
        assert go_on[i].wait(timeout=60)
        return [first, batcher.submit([f"{i}-1"])]

    def send_one_by_one():
        wait_for(lambda: batcher.queue.qsize() == 4)
        gate.set()
        for i in range(4):
            wait_for(lambda: len(sizes) == 2 and batcher.queue.unfinished_tasks == 5 + i)  # calls put so far
            go_on[i].set()
            wait_for(lambda: batcher.queue.unfinished_tasks == 6 + i and batcher.queue.qsize() == 0)  # taken

    batcher = DynamicBatcher(run, max_items=64, max_wait_s=0.001)
    lone = threading.Thread(target=batcher.submit, args=(["lone"],))
    lone.start()
    wait_for(lambda: sizes)
    results, errors = in_threads(4, caller, send_one_by_one)
    lone.join()
    assert errors == [None] * 4 and results == [[[f"{i}-0"], [f"{i}-1"]] for i in range(4)]
    assert sizes == [1, 4, 4]
