"""Service throughput, each pair measured side by side in one run on the same tiny model:

  (a) revisions/s at 16 concurrent clients sending one item per call: dynamic batching on vs off;
      and the backend's own gain: the same items revised in-process in batches of 16 vs one at a
      time (no gRPC, no waiting for callers);
  (b) revisions/s of the adaptive reviser stopping at [No Revise] vs the same model forced to
      revise (force_revise), on a set where half the originals are already right, in calls of 64
      (the pipeline's services.batch_size), with the shares of strong and weak originals it kept;
      and its ceiling: the ratio if the revising part of a call cost in proportion to the rows it
      revises. Both ways pay the one pass over the prompts that picks the label (and that the
      revisions continue from), so the ceiling is 1 / (p + (1 - p) r), p the share of a forced
      call that pass takes, r the share of rows revised;
  (c) the time of one call through gRPC on loopback vs calling the backend in-process, at batch
      1 and 32, over originals half strong and half weak, in turns in the client's process; and
      what the round trip adds to a backend with no model, one that answers at once and one that
      holds its thread as long as the model's call took (the stack's own cost, and what waking
      the client and the server after that wait costs on this machine);
  (d) prefix caching: revisions/s of forced revision in calls of 64, in-process, with the cache
      of the opening the prompts share vs without.

The clients of (a) and (c) run in a process of their own, as clients do: in the server's process
their threads would compete with it for the GIL.

    python bench/services.py [--seconds 10] [--reviser runs/quickstart/adapt/reviser]

The model is a tiny Llama reviser on the spelling task (a right answer is one without a typo): by
default trained here for a minute to keep right answers ([No Revise]) and fix the others ([Major
Revise] + the right sentence); --reviser uses a trained one, e.g. the quickstart's adaptive
reviser."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from seft.chat import reviser_prompt  # noqa: E402
from seft.client import ReviserClient  # noqa: E402
from seft.settings import Sampling
from seft.spec import TinyModel  # noqa: E402
from seft.tasks import spelling  # noqa: E402
from seft.tinymodel import build_model, build_tokenizer, quick_sft  # noqa: E402
from seft_services.backends import Revision  # noqa: E402
from seft_services.backends.transformers_lm import CausalLM, TransformersReviser  # noqa: E402
from seft_services.protocol import SamplingParams  # noqa: E402
from seft_services.server import Server  # noqa: E402

SAMPLING = Sampling(max_new_tokens=12, temperature=0.0)
PARAMS = SamplingParams(max_new_tokens=SAMPLING.max_new_tokens, temperature=0.0)  # the same, for the backend
STEPS = int(os.environ.get("SEFT_BENCH_STEPS", "1000"))


def cases(n: int, seed: int) -> list[tuple[list[dict], str, str]]:
    """(prompt, original, right answer): half the originals right (strong), half with two typos."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = spelling.make_prompt(rng)
        right = [spelling.CORRECT.get(w, w) for w in words]
        typos = set() if i % 2 == 0 else set(rng.sample(range(len(right)), 2))
        original = [spelling.typo(w) if j in typos else w for j, w in enumerate(right)]
        out.append((spelling.prompt_messages(words), " ".join(original), " ".join(right)))
    return out


def items(n: int, seed: int) -> list[tuple[list[dict], str]]:
    return [(prompt, original) for prompt, original, _ in cases(n, seed)]


def train_reviser(work: Path) -> Path:
    base = build_model(build_tokenizer(spelling.corpus_words()), TinyModel(), 0, work / "base")
    examples = [(reviser_prompt(p, o), "[No Revise]" if o == right else f"[Major Revise] {right}")
                for p, o, right in cases(1024, seed=1)]
    return quick_sft(base, examples, work / "reviser", steps=STEPS, lr=2e-3)


def _clients(endpoint: str, work: list, clients: int, seconds: float, out) -> None:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with ReviserClient(endpoint) as c:
            k = i
            while time.monotonic() < stop:
                c.revise([work[k % len(work)]], SAMPLING)
                done[i] += 1
                k += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(sum(done) / seconds)


def _local_and_remote_seconds(model: str, endpoint: str, batches: list, out) -> None:
    """The median time of the batches in-process (the same model loaded here) and through the
    server, measured in turns so that the machine's changes of pace hit both alike."""
    torch.set_num_threads(1)
    backend = TransformersReviser(CausalLM(model))
    with ReviserClient(endpoint, batch_size=64) as client:
        out.put(median_seconds(lambda: [backend.revise(b, PARAMS) for b in batches],
                               lambda: [client.revise(b, SAMPLING) for b in batches]))


class Hold:
    """A reviser with no model: it holds its thread for `seconds` (as a model's call would) and
    leaves every original as it is."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def revise(self, items, params, force_revise=False, stop=None) -> list[Revision]:
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        return [Revision(None, original, False, 0, 0) for _, original in items]


def _round_trip_seconds(endpoint: str, batches: list, out) -> None:
    """The median time of the batches' calls through the server."""
    with ReviserClient(endpoint, batch_size=64) as client:
        out.put(median_seconds(lambda: [client.revise(b, SAMPLING) for b in batches])[0])


def in_child(fn, *args):
    """fn(*args, out) in another process, as clients run: in the server's process their threads
    would compete with it for the GIL. Returns what fn puts on out."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=fn, args=(*args, out))
    proc.start()
    result = out.get(timeout=600)
    proc.join()
    return result


def median_seconds(*fns, repeat: int = 20) -> list[float]:
    """The median time of each fn, run in turns (after one warm-up each)."""
    times = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def label_pass_share(backend: TransformersReviser, work: list, size: int = 64) -> float:
    """The share of a forced call (in-process, calls of `size`) that its pass over the prompts takes."""
    batches = [work[i:i + size] for i in range(0, len(work), size)]
    seqs = [backend.encode(b) for b in batches]
    label_pass, forced = median_seconds(lambda: [backend.choose_labels(s, PARAMS, force_revise=True) for s in seqs],
                                        lambda: [backend.revise(b, PARAMS, force_revise=True) for b in batches],
                                        repeat=5)
    return label_pass / forced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reviser", type=Path, help="a trained spelling reviser's model directory (default: train "
                        "one here), e.g. runs/quickstart/adapt/reviser")
    args = parser.parse_args()
    torch.set_num_threads(1)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="seft-bench-") as tmp:
        model = args.reviser or train_reviser(Path(tmp))
        backend = TransformersReviser(CausalLM(str(model)))
        work = items(256, seed=2)
        rows = []

        # (a) dynamic batching on vs off, 16 clients of one item per call
        for wait_ms in (0.0, 5.0):
            srv = Server({"reviser": backend}, batch_wait_ms=wait_ms).start()
            try:
                rows.append(("a", f"16 clients, batching {'on' if wait_ms else 'off'}",
                             in_child(_clients, srv.endpoint, work, 16, args.seconds), "revisions/s"))
            finally:
                srv.stop(grace=1)
        rows[-1] += (rows[-1][2] / rows[-2][2],)
        singles, batches = median_seconds(lambda: [backend.revise([w], PARAMS) for w in work[:64]],
                                          lambda: [backend.revise(work[i:i + 16], PARAMS) for i in range(0, 64, 16)],
                                          repeat=5)
        rows.append(("a", "in-process: batches of 16 vs one item at a time", None, "", singles / batches))

        srv = Server({"reviser": backend}).start()
        try:
            with ReviserClient(srv.endpoint, batch_size=64) as client:
                # (b) adaptive vs forced, half the originals strong, in turns
                times = median_seconds(*(lambda force=force: client.revise(work, SAMPLING, force_revise=force)
                                         for force in (True, False)), repeat=5)
                for force, seconds in zip((True, False), times):
                    out = client.revise(work, SAMPLING, force_revise=force)
                    kept_strong = sum(not x.revised for x in out[0::2]) / len(out[0::2])
                    kept_weak = sum(not x.revised for x in out[1::2]) / len(out[1::2])
                    rows.append(("b", f"{'forced to revise' if force else 'adaptive'} (kept {kept_strong:.0%} of "
                                      f"strong, {kept_weak:.0%} of weak)", len(work) / seconds, "revisions/s"))
            rows[-1] += (rows[-1][2] / rows[-2][2],)
            revised = sum(x.revised for x in out) / len(out)
        finally:
            srv.stop(grace=1)
        share = label_pass_share(backend, work)
        ceiling = f"ceiling: the label pass is {share:.0%} of a forced call, {revised:.0%} of rows revised"
        rows.append(("b", ceiling, None, "", 1 / (share + (1 - share) * revised)))

        # (c) gRPC round trip (from a client process) vs in-process there, batching off: no wait
        # budget in the round trip. Each measures a run of calls over half strong, half weak originals.
        srv = Server({"reviser": backend}, batch_wait_ms=0).start()
        try:
            for n, calls in ((1, 16), (32, 4)):
                batches = [work[i * n:(i + 1) * n] for i in range(calls)]
                local, remote = (t / calls for t in in_child(_local_and_remote_seconds, str(model), srv.endpoint, batches))
                rows.append(("c", f"batch {n}: in-process", local * 1000, "ms/call"))
                rows.append(("c", f"batch {n}: gRPC on loopback", remote * 1000, "ms/call", remote / local))
                for hold in (0.0, local):
                    bare = Server({"reviser": Hold(hold)}, batch_wait_ms=0).start()
                    try:
                        added = in_child(_round_trip_seconds, bare.endpoint, batches) / calls - hold
                    finally:
                        bare.stop(grace=1)
                    rows.append(("c", f"batch {n}: what gRPC adds to a backend that answers after {hold * 1000:.1f} ms",
                                 added * 1000, "ms/call"))
        finally:
            srv.stop(grace=1)

        # (d) prefix caching on vs off, the same calls in turns
        plain = TransformersReviser(CausalLM(str(model), prefix_caching=False))
        calls = [work[i:i + 64] for i in range(0, len(work), 64)]
        off, on = median_seconds(*(lambda r=r: [r.revise(c, PARAMS, force_revise=True) for c in calls]
                                   for r in (plain, backend)), repeat=5)
        prompt = len(backend.encode(work[:1])[0])
        rows.append(("d", "forced, calls of 64, no prefix cache", len(work) / off, "revisions/s"))
        rows.append(("d", f"with it (an opening of {len(backend.lm.prefix)} of ~{prompt} prompt tokens)",
                     len(work) / on, "revisions/s", off / on))

    table = Table(title="seft services on a tiny reviser (one torch thread per process)")
    for col in ("", "measurement", "value", "unit", "ratio"):
        table.add_column(col, justify="right" if col in ("value", "ratio") else "left")
    for group, name, value, unit, *ratio in rows:  # a row's ratio: its value over the baseline's above
        table.add_row(group, name, "" if value is None else f"{value:,.1f}", unit, f"{ratio[0]:.2f}x" if ratio else "")
    console.print(table)


if __name__ == "__main__":
    main()
