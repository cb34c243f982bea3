"""Dynamic batching: concurrent calls with the same parameters are gathered into one backend
batch of up to `max_items` items, so many small requests share one forward pass. Each call gets back
exactly its own results, in order.

Calls gather only while the backend is busy: a call that finds it idle starts at once, with whatever
is queued; calls that arrive during a batch make up the next one. Under steady load the callers of a
batch come back for their next call a moment after it ends, so the next batch also waits for them:
for as many calls as were queued when the last batch ended plus that batch's own (else load splits
into alternating part-size batches), at most `max_wait_s` or half the last batch's time after it
ended, whichever is longer: many callers take a while to come back (each answer and each next call
costs the server's Python time), and a wait of half a batch for a full next one costs less than a
part-size batch does. A lone caller never waits.

A call may carry `stop` (per-item flags, true once its client has gone): a call stopped while it
waits is dropped before its batch runs, and the batch's own `stop` tells the backend which rows
to stop generating."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field

from seft_services.backends import Cancelled


Stop = Callable[[], list]  # per-item flags
_CLOSE = object()  # on the queue: the batcher's thread ends there


@dataclass
class _Call:
    key: Hashable
    items: list
    stop: Stop | None = None
    future: Future = field(default_factory=Future)

    def stopped(self) -> list[bool]:
        return self.stop() if self.stop else [False] * len(self.items)


class DynamicBatcher:
    def __init__(self, run: Callable[[list, Hashable, Stop], list], max_items: int, max_wait_s: float,
                 on_batch: Callable[[int], None] | None = None):
        self.run, self.max_items, self.max_wait_s, self.on_batch = run, max_items, max_wait_s, on_batch
        self.queue: queue.Queue[_Call] = queue.Queue()
        self.held: list[_Call] = []  # calls that could not join the last batch (other key, or too big)
        self.thread = threading.Thread(target=self._loop, daemon=True, name="seft-batcher")
        self.thread.start()

    def submit(self, items: list, key: Hashable = None, stop: Stop | None = None) -> list:
        """Blocks until this call's results are ready; raises what the backend raised."""
        call = _Call(key, list(items), stop)
        self.queue.put(call)
        return call.future.result()

    def close(self, timeout: float | None = None) -> None:
        """Ends its thread (which holds the backend) once the calls queued before this are done,
        waiting up to `timeout` seconds: a thread of torch's still ending as the process exits
        aborts it."""
        self.queue.put(_CLOSE)
        self.thread.join(timeout)

    def _next(self, timeout: float | None) -> _Call | None:
        if self.held:
            return self.held.pop(0)
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _loop(self) -> None:
        expected, last_end, last_took = 0, 0.0, 0.0  # calls expected back after the last batch; its end, its time
        while True:
            first = self._next(None)
            if first is _CLOSE:
                return
            deadline = last_end + max(self.max_wait_s, last_took / 2)  # past already when the backend was idle a while
            batch, size, passed = [first], len(first.items), []
            while size < self.max_items:
                wait = deadline - time.monotonic() if len(batch) < expected else 0.0
                call = self._next(max(0.0, wait))
                if call is None:
                    break
                if call is _CLOSE:  # after this batch
                    self.held.append(call)
                    break
                if call.key == first.key and size + len(call.items) <= self.max_items:
                    batch.append(call)
                    size += len(call.items)
                else:
                    passed.append(call)
            self.held = passed + self.held
            started = time.monotonic()
            expected = self._execute(batch, size)
            last_end = time.monotonic()
            last_took = last_end - started

    def _execute(self, batch: list[_Call], size: int) -> int:
        """Runs one batch; returns how many calls the next may wait for: those queued when it ended
        (counted before its callers are answered, who may call again at once) and its own."""
        for call in [c for c in batch if all(c.stopped())]:  # its client is gone: free the slot
            call.future.set_exception(Cancelled())
            batch.remove(call)
            size -= len(call.items)
        if not batch:
            return len(self.held) + self.queue.qsize()
        error = None
        try:
            results = self.run([item for call in batch for item in call.items], batch[0].key,
                               lambda: [flag for call in batch for flag in call.stopped()])
            if len(results) != size:
                raise RuntimeError(f"backend returned {len(results)} results for {size} items")
        except BaseException as exc:  # every call of the batch gets the error
            error = exc
        expected = len(batch) + len(self.held) + self.queue.qsize()
        if error is not None:
            for call in batch:
                call.future.set_exception(error)
            return expected
        if self.on_batch:
            self.on_batch(size)
        start = 0
        for call in batch:
            call.future.set_result(results[start:start + len(call.items)])
            start += len(call.items)
        return expected


class Batched:
    """A backend whose generate / revise / score calls go through a DynamicBatcher; calls are
    merged only when their other arguments (sampling parameters, ...) are equal."""

    def __init__(self, backend, max_items: int, max_wait_s: float, on_batch=None):
        self.backend = backend
        self.batchers: dict[str, DynamicBatcher] = {}
        for name in ("generate", "revise", "score"):
            method = getattr(backend, name, None)
            if method is not None:
                run = ((lambda m: lambda items, args, stop: m(items))(method) if name == "score"
                       else (lambda m: lambda items, args, stop: m(items, *args, stop=stop))(method))
                self.batchers[name] = DynamicBatcher(run, max_items, max_wait_s, on_batch)

    def close(self, timeout: float | None = None) -> None:
        for batcher in self.batchers.values():
            batcher.close(timeout)

    def generate(self, prompts, params, stop=None):
        return self.batchers["generate"].submit(prompts, (params,), stop)

    def revise(self, items, params, force_revise: bool = False, stop=None):
        return self.batchers["revise"].submit(items, (params, force_revise), stop)

    def score(self, items):
        return self.batchers["score"].submit(items, ())
