"""A reviser service under sustained load: 32 clients calling Revise back to back for a minute
(the suite runs the same load for a fixed number of calls: test_services_lifecycle.py). Prints
calls, errors, p50 / p99 latency and revisions/s; exits 1 on any failed call.

    python bench/soak.py [--seconds 60] [--clients 32]"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the suite's load generator and tiny model

from helpers import Served, hammer, make_base, sort_prompts  # noqa: E402

from seft.chat import reviser_prompt  # noqa: E402
from seft.tinymodel import quick_sft  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        examples = [(reviser_prompt(p, " ".join(map(str, nums))), "[Major Revise] 1 2 3")
                    for p, nums in sort_prompts(64)]
        reviser = quick_sft(make_base(work / "base"), examples, work / "reviser", steps=150)
        with Served(work, "reviser", "--model", str(reviser)) as served:
            outcomes: list = []
            done = threading.Event()
            threads = hammer(served.endpoint, args.clients, done, outcomes)
            done.wait(args.seconds)  # the load's length: this is a benchmark, not a test
            done.set()
            for t in threads:
                t.join(timeout=120)
            served.stop()
    errors = [code for _, _, code, _ in outcomes if code != "OK"]
    latencies = sorted(end - start for start, end, _, _ in outcomes)
    span = max(end for _, end, _, _ in outcomes) - min(start for start, _, _, _ in outcomes)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"reviser load: {args.clients} clients x {args.seconds:.0f} s: {len(outcomes)} calls, {len(errors)} errors "
          f"{sorted(set(errors))}, p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"{len(outcomes) / span:.1f} revisions/s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
