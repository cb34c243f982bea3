"""Pipelines: validate, run, report, compare, status, logs, and on a cluster submit and stage."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import entry_points
from pathlib import Path

from seft.cli.args import OVERRIDES
from seft.runstate import RUNS
from seft.errors import SeftError, SpecError


def load_checked(args):
    """The spec, its schema valid and what it names there and loadable (seft.checks)."""
    from seft.checks import problems
    from seft.specfile import load_spec

    spec = load_spec(args.file, args.set)
    found = problems(spec)
    if found:
        raise SpecError(f"{args.file}: " + "\n  ".join([f"{len(found)} problem(s) with its inputs:", *found]))
    return spec


def cmd_validate(args) -> int:
    spec = load_checked(args)
    print(f"{args.file}: valid {spec.recipe} pipeline {spec.name!r}; its models, data and critics load")
    return 0


def cmd_run(args) -> int:
    from rich.console import Console

    from seft.executors.local import run_pipeline
    from seft.recipes import stages_for
    from seft.report import print_results, write_report
    from seft.storage import open_store

    spec = load_checked(args)
    console = Console()
    report = run_pipeline(spec, stages_for(spec), console, workdir=Path(args.workdir))
    print_results(console, report, spec.critics[0].name)
    run_dir = Path(report["run_dir"])
    markdown = write_report(run_dir, _evaluate_samples(open_store(spec.store, spec.name)))
    console.print(f"wall time {report['wall_seconds']:.0f}s; report: {markdown} (and {run_dir / 'report.json'})",
                  soft_wrap=True)  # paths stay whole, for copying
    return 0


def _evaluate_samples(store) -> list[dict] | None:
    """The evaluate stage's reviser rows (for the reward histograms), or None without them."""
    from seft.records import read_jsonl

    if store.manifest("evaluate") is None:
        return None
    return [r for r in read_jsonl(store.fetch("evaluate") / "samples.jsonl") if "reviser" in r]


def cmd_report(args) -> int:
    import sys

    from seft.report import write_report
    from seft.specfile import load_spec
    from seft.storage import is_local, open_store

    run_dir = run_dir_of(args.run)
    report = json.loads((run_dir / "report.json").read_text())
    if args.spec:
        spec = load_spec(args.spec)
        store = open_store(spec.store, spec.name)
    elif is_local(report["store"]):
        store = open_store(report["store"])
    else:
        store = None
        print(f"{report['store']}: give --spec for the store's settings to plot reward histograms", file=sys.stderr)
    print(write_report(run_dir, _evaluate_samples(store) if store else None))
    return 0


def cmd_compare(args) -> int:
    from rich.console import Console

    from seft.report import compare_table

    Console().print(compare_table([json.loads((run_dir_of(r) / "report.json").read_text()) for r in args.runs]))
    return 0


def run_dir_of(ref: str) -> Path:
    path = Path(ref)
    if (path / "run.json").exists():
        return path
    if (RUNS / ref / "run.json").exists():
        return RUNS / ref
    raise SeftError(f"no run at {ref!r}: expected a run directory (with run.json) or a run name under ./{RUNS}")


def cluster():
    """The cluster commands' implementation, from the operator package (entry point seft.cluster)."""
    found = list(entry_points(group="seft.cluster"))
    try:
        if not found:
            raise ImportError("no seft.cluster entry point is installed")
        return found[0].load()
    except ImportError as exc:
        raise SeftError(f"the cluster commands need the operator extra: pip install 'seft[operator]' ({exc})") from None


def cmd_status(args) -> int:
    from rich.console import Console

    from seft import runstate
    from seft.report import pipeline_table, stages_table

    if args.kube:
        pipeline = cluster().get(args.run, args.namespace, args.context)
        if args.json:
            print(json.dumps(pipeline.get("status") or {}, indent=2))
        else:
            Console().print(pipeline_table(pipeline))
        return 0
    run = runstate.read(run_dir_of(args.run) / "run.json")
    if args.json:
        print(json.dumps(run, indent=2))
    else:
        Console().print(stages_table(run))
    return 0


def cmd_logs(args) -> int:
    if args.kube:
        print(cluster().logs(args.run, args.stage, args.namespace, args.context))
        return 0
    logs = run_dir_of(args.run) / "logs"
    files = sorted(logs.glob(f"{args.stage}-*.log" if args.stage else "*.log"))
    if not files:
        raise SeftError(f"no logs{f' of stage {args.stage!r}' if args.stage else ''} under {logs}")
    for f in files:
        print(f"==> {f.name} <==\n{f.read_text()}")
    return 0


def cmd_submit(args) -> int:
    if not Path(args.file).exists():
        raise SeftError(f"{args.file!r}: no such file")
    print(cluster().submit(args.file, args.namespace, args.context))
    return 0


def cmd_stage(args) -> int:
    from rich.console import Console

    from seft.executors.pod import run_stage
    from seft.specfile import load_spec

    summary = run_stage(load_spec(args.spec), args.stage, Console(stderr=True), Path(args.workdir))
    print(json.dumps(summary, default=str))
    return 0


def register(sub) -> None:
    v = sub.add_parser("validate", help="check a pipeline spec")
    v.add_argument("file")
    v.add_argument("--set", **OVERRIDES)
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("run", help="run a pipeline on this machine (resumes where it stopped)")
    r.add_argument("file")
    r.add_argument("--set", **OVERRIDES)
    r.add_argument("--workdir", default=str(RUNS), help=f"where run.json, logs and report.json go (default ./{RUNS})")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="write report.md and plots/*.png for a run (seft run does it at the end)")
    rp.add_argument("run", help="run directory, or run name under ./runs")
    rp.add_argument("--spec", help="the run's spec: the store's settings, for an s3:// store")
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser("compare", help="several runs' results side by side")
    cp.add_argument("runs", nargs="+", help="run directories, or run names under ./runs")
    cp.set_defaults(func=cmd_compare)

    kube = argparse.ArgumentParser(add_help=False)
    kube.add_argument("--kube", action="store_true", help="read the cluster (a SeftPipeline) instead of a local run")
    kube.add_argument("--namespace", "-n", default="seft", help="with --kube (default seft)")
    kube.add_argument("--context", help="with --kube: the kubeconfig context (default the current one)")

    s = sub.add_parser("status", parents=[kube], help="each stage's state, timing and outputs")
    s.add_argument("run", help="run directory, or run name under ./runs; with --kube the pipeline's name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    lg = sub.add_parser("logs", parents=[kube], help="a run's logs, or one stage's")
    lg.add_argument("run", help="run directory, or run name under ./runs; with --kube the pipeline's name")
    lg.add_argument("stage", nargs="?")
    lg.set_defaults(func=cmd_logs)

    sb = sub.add_parser("submit", help="create (or update) a SeftPipeline on the cluster, like kubectl apply -f")
    sb.add_argument("file", help="a SeftPipeline manifest")
    sb.add_argument("--namespace", "-n", default="seft")
    sb.add_argument("--context", help="the kubeconfig context (default the current one)")
    sb.set_defaults(func=cmd_submit)

    sg = sub.add_parser("stage", help="run one stage in a pod (the operator's Jobs): inputs from the store, "
                                      "services from SEFT_SERVICE_<NAME>")
    sg.add_argument("stage")
    sg.add_argument("--spec", required=True, help="the pipeline spec (the operator mounts it)")
    sg.add_argument("--workdir", default="/tmp/seft", help="scratch space")
    sg.set_defaults(func=cmd_stage)
