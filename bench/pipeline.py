"""The platform's overhead on a whole pipeline: the quickstart's work through `seft run`, then the
same work as a bare loop in this one process, side by side.

    python bench/pipeline.py [--spec examples/quickstart.yaml] [--set FIELD=VALUE ...] [--keep DIR]

The bare loop redoes every stage's compute on the run's own inputs: each training from the
TrainJob the run wrote (<stage>/<name>.train.yaml: same model, data, steps and batch size) by
calling seft.train's train() in-process, one after another (no torchrun, no subprocess); each
stage's generation and revision on the run's models through the service backends in-process (no
gRPC, no service processes), in the run's batch size; the critic called directly. It leaves out
what it need not repeat: making the data, splitting it, the store, the report. Both take the
machine's cores as they would alone: `seft run` its default threads (a lone training every usable
core, trainings side by side a share each, a service one), the bare loop every usable core for
everything. The ratio is the platform's cost: process and import start-up, services, the store,
less what running trainings side by side wins."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
import transformers
import yaml
from rich.console import Console
from rich.table import Table

from seft.labelling import Label, Rule, assign
from seft.records import read_jsonl
from seft.specfile import load_spec
from seft.train import TrainJob, torch_threads
from seft.train.__main__ import train
from seft_services.backends.critics import RuleCritic
from seft_services.backends.transformers_lm import CausalLM, TransformersGenerator, TransformersReviser
from seft_services.protocol import SamplingParams

ROOT = Path(__file__).resolve().parents[1]


def params(sampling, seed: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                          top_p=sampling.top_p, seed=seed)


def published(path: str) -> str:
    """A path in a stage's staging directory (where the run wrote it) as published."""
    return re.sub(r"/\.staging/([a-z_]+)-[0-9a-f]+/", r"/\1/", path)


class Bare:
    """One stage's work at a time, on the finished run in `run_dir`."""

    def __init__(self, spec, run_dir: Path, scratch: Path):
        self.spec, self.run, self.scratch, self.bs = spec, run_dir, scratch, spec.services.batch_size
        self.critic = RuleCritic(spec.critics[0].callable)

    def trainings(self, stage: str) -> None:
        for config in sorted((self.run / stage).glob("*.train.yaml")):
            job = TrainJob.model_validate(yaml.safe_load(config.read_text()))
            train(job.model_copy(update={"model": published(job.model), "data": published(job.data),
                                         "output_dir": str(self.scratch / stage / config.name),
                                         "checkpoint_dir": None}))

    def chunks(self, fn, items: list, sampling) -> list:
        return [out for i in range(0, len(items), self.bs) for out in fn(items[i:i + self.bs], params(sampling, i))]

    def revise(self, model: str, items: list, label_first: bool = True) -> list:
        reviser = TransformersReviser(CausalLM(str(self.run / model)), label_first=label_first)
        return self.chunks(reviser.revise, items, self.spec.revision)

    def generate(self, model: Path, prompts: list, sampling) -> list[str]:
        return [c.text for c in self.chunks(TransformersGenerator(CausalLM(str(model))).generate, prompts, sampling)]

    def score(self, items: list) -> list[float]:
        return self.critic.score(items)

    def label(self) -> None:
        rows = list(read_jsonl(self.run / "prepare" / "adaptive.jsonl"))
        items = [(r["prompt"], r["original"]) for r in rows]
        revised = self.revise("warmup/reviser", items, label_first=False)
        before = self.score([(p, o, r.get("metadata")) for (p, o), r in zip(items, rows)])
        after = self.score([(p, v.text, r.get("metadata")) for (p, _), v, r in zip(items, revised, rows)])
        cfg = self.spec.labelling
        rule = Rule(cfg.alpha, cfg.beta, cfg.p, Label.from_name(cfg.relabel_to), self.spec.seed)
        [assign(b - a, r["id"], rule) for a, b, r in zip(before, after, rows)]

    def evolve(self, model: Path) -> None:
        prompts = [r["prompt"] for r in read_jsonl(self.run / "prepare" / "prompts.jsonl")]
        drafts = self.generate(model, prompts, self.spec.generation)
        self.revise("adapt/reviser", list(zip(prompts, drafts)))

    def evaluate(self) -> None:
        test = list(read_jsonl(self.run / "prepare" / "test.jsonl"))
        items = [(r["prompt"], r["original"]) for r in test]
        for name, label_first in (("warmup/reviser", False), ("adapt/reviser", True)):
            revised = self.revise(name, items, label_first)
            self.score([(p, v.text, r.get("metadata")) for (p, _), v, r in zip(items, revised, test)])
        heldout = list(read_jsonl(self.run / "prepare" / "heldout.jsonl"))
        prompts = [h["prompt"] for h in heldout]
        for model in (self.run / "bootstrap" / "policy", self.run / "internal" / "policy",
                      self.run / "external" / "policy"):
            answers = self.generate(model, prompts, self.spec.evaluation.sampling)
            self.score([(p, a, h.get("metadata")) for p, a, h in zip(prompts, answers, heldout)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "quickstart.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--keep", type=Path, help="work in this new directory and keep it (the run's report, logs) "
                        "instead of a temporary one")
    args = parser.parse_args()
    torch.set_num_threads(torch_threads(os.environ))  # as train() sets them: OMP_NUM_THREADS, else every core
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    overrides = [x for kv in args.set for x in ("--set", kv)]
    spec = load_spec(args.spec, args.set)
    if spec.recipe != "seft" or spec.baselines or not spec.bootstrap:
        raise SystemExit("bench/pipeline.py measures a SEFT spec with a bootstrap and no baselines (the quickstart)")
    if args.keep:
        args.keep.mkdir(parents=True)  # a new one: a finished run there would be skipped, not measured
    with (contextlib.nullcontext(str(args.keep.resolve())) if args.keep
          else tempfile.TemporaryDirectory(prefix="seft-bench-")) as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "seft.cli", "run", str(args.spec.resolve()), "--workdir",
                        str(tmp / "runs"), "--set", f"store.uri=file://{tmp}/runs", *overrides],
                       cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        seft_run = time.perf_counter() - started
        run_dir = tmp / "runs" / spec.name
        bare = Bare(spec, run_dir, tmp / "bare")
        work = [("bootstrap", lambda: bare.trainings("bootstrap")), ("warmup", lambda: bare.trainings("warmup")),
                ("label", bare.label), ("adapt", lambda: bare.trainings("adapt")),
                ("internal", lambda: (bare.evolve(run_dir / "bootstrap" / "policy"), bare.trainings("internal"))),
                ("external", lambda: (bare.evolve(run_dir / "bootstrap" / "generator"), bare.trainings("external"))),
                ("evaluate", bare.evaluate)]
        seconds = {}
        for stage, fn in work:
            started = time.perf_counter()
            fn()
            seconds[stage] = time.perf_counter() - started
    table = Table(title=f"{args.spec.name}: `seft run` vs the same work as a bare loop in one process")
    for col in ("", "seconds"):
        table.add_column(col, justify="right" if col else "left")
    for stage, s in seconds.items():
        table.add_row(f"bare: {stage}", f"{s:.1f}")
    bare_total = sum(seconds.values())
    table.add_row("bare loop, in all", f"{bare_total:.1f}")
    table.add_row("seft run", f"{seft_run:.1f}")
    table.add_row("ratio", f"{seft_run / bare_total:.2f}x")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
