"""Dynamic batching: concurrent calls with the same parameters are gathered into one backend
batch, up to `max_items` items or until `max_wait_s` after the first arrived, so many small
requests share one forward pass. Each call gets back exactly its own results, in order."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field


@dataclass
class _Call:
    key: Hashable
    items: list
    future: Future = field(default_factory=Future)


class DynamicBatcher:
    def __init__(self, run: Callable[[list, Hashable], list], max_items: int, max_wait_s: float,
                 on_batch: Callable[[int], None] | None = None):
        self.run, self.max_items, self.max_wait_s, self.on_batch = run, max_items, max_wait_s, on_batch
        self.queue: queue.Queue[_Call] = queue.Queue()
        self.held: list[_Call] = []  # calls that could not join the last batch (other key, or too big)
        threading.Thread(target=self._loop, daemon=True, name="seft-batcher").start()

    def submit(self, items: list, key: Hashable = None) -> list:
        """Blocks until this call's results are ready; raises what the backend raised."""
        call = _Call(key, list(items))
        self.queue.put(call)
        return call.future.result()

    def _next(self, timeout: float | None) -> _Call | None:
        if self.held:
            return self.held.pop(0)
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            batch, size = [first], len(first.items)
            deadline = time.monotonic() + self.max_wait_s
            passed: list[_Call] = []
            while size < self.max_items:
                call = self._next(max(0.0, deadline - time.monotonic()))
                if call is None:
                    break
                if call.key == first.key and size + len(call.items) <= self.max_items:
                    batch.append(call)
                    size += len(call.items)
                else:
                    passed.append(call)
                if time.monotonic() >= deadline and not self.held and self.queue.empty():
                    break
            self.held = passed + self.held
            self._execute(batch, size)

    def _execute(self, batch: list[_Call], size: int) -> None:
        try:
            results = self.run([item for call in batch for item in call.items], batch[0].key)
            if len(results) != size:
                raise RuntimeError(f"backend returned {len(results)} results for {size} items")
        except BaseException as exc:  # every call of the batch gets the error
            for call in batch:
                call.future.set_exception(exc)
            return
        if self.on_batch:
            self.on_batch(size)
        start = 0
        for call in batch:
            call.future.set_result(results[start:start + len(call.items)])
            start += len(call.items)


class Batched:
    """A backend whose generate / revise / score calls go through a DynamicBatcher; calls are
    merged only when their other arguments (sampling parameters, ...) are equal."""

    def __init__(self, backend, max_items: int, max_wait_s: float, on_batch=None):
        self.backend = backend
        self.batchers: dict[str, DynamicBatcher] = {}
        for name in ("generate", "revise", "score"):
            method = getattr(backend, name, None)
            if method is not None:
                run = (lambda m: lambda items, args: m(items, *args))(method)
                self.batchers[name] = DynamicBatcher(run, max_items, max_wait_s, on_batch)

    def generate(self, prompts, params):
        return self.batchers["generate"].submit(prompts, (params,))

    def revise(self, items, params, force_revise: bool = False):
        return self.batchers["revise"].submit(items, (params, force_revise))

    def score(self, items):
        return self.batchers["score"].submit(items, ())
