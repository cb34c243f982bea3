"""The `seft` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from seft.errors import SeftError, SpecError


def cmd_validate(args) -> int:
    from seft.spec import load_spec

    spec = load_spec(args.file, args.set)
    print(f"{args.file}: valid {spec.recipe} pipeline {spec.name!r}")
    return 0


def cmd_run(args) -> int:
    from rich.console import Console

    from seft.executors.local import run_pipeline
    from seft.recipes import stages_for
    from seft.report import policy_table, reviser_table, stages_table
    from seft.spec import load_spec

    spec = load_spec(args.file, args.set)
    console = Console()
    report = run_pipeline(spec, stages_for(spec), console)
    console.print(stages_table(report))
    metrics = report.get("metrics")
    if metrics:
        critic = spec.critics[0].name
        console.print(reviser_table(metrics, critic))
        console.print(policy_table(metrics))
    console.print(f"wall time {report['wall_seconds']:.0f}s; report: {Path(report['run_dir']) / 'report.json'}")
    return 0


def _run_dir(ref: str) -> Path:
    path = Path(ref)
    if (path / "run.json").exists():
        return path
    if (Path("runs") / ref / "run.json").exists():
        return Path("runs") / ref
    raise SeftError(f"no run at {ref!r}: expected a run directory (with run.json) or a run name under ./runs")


def cmd_status(args) -> int:
    from rich.console import Console

    from seft.report import stages_table

    run_dir = _run_dir(args.run)
    run = json.loads((run_dir / "run.json").read_text())
    alive = _pid_alive(run.get("pid"))
    for stage in run.get("stages", {}).values():
        if stage.get("state") == "running" and not alive:
            stage["state"] = "interrupted"
    if args.json:
        print(json.dumps(run, indent=2))
    else:
        Console().print(stages_table(run))
    return 0


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_train(args) -> int:
    from seft.train import torchrun_command

    if not Path(args.config).exists():
        raise SeftError(f"--config {args.config!r}: no such file")
    cmd = torchrun_command(Path(args.config), args.nproc_per_node)
    for item in args.set:
        cmd += ["--set", item]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.execv(cmd[0], cmd)


def cmd_serve(args) -> int:
    from seft_services.protocol import Limits
    from seft_services.server import Server, build_backend, configure_logging, run_forever

    configure_logging()
    try:
        backend = build_backend(args.kind, model=args.model, label_first=not args.no_labels,
                                critic_backend=args.critic, critic_callable=args.callable)
    except ValueError as exc:
        raise SeftError(str(exc)) from None
    server = Server({args.kind: backend}, host=args.host, port=args.port,
                    limits=Limits(max_batch=args.max_batch, max_new_tokens=args.max_new_tokens))
    run_forever(server, args.port_file)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seft", description="Align LLMs by self-evolution (SEFT).")
    sub = p.add_subparsers(dest="command", required=True)
    overrides = {"action": "append", "default": [], "metavar": "FIELD=VALUE",
                 "help": "override a spec field, e.g. --set reviser_training.learning_rate=1e-5"}

    v = sub.add_parser("validate", help="check a pipeline spec")
    v.add_argument("file")
    v.add_argument("--set", **overrides)
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("run", help="run a pipeline on this machine (resumes where it stopped)")
    r.add_argument("file")
    r.add_argument("--set", **overrides)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="each stage's state, timing and outputs")
    s.add_argument("run", help="run directory, or run name under ./runs")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    t = sub.add_parser("train", help="fine-tune under torchrun (HF Trainer, optional DeepSpeed)")
    t.add_argument("--config", required=True, help="TrainJob YAML/JSON (model, data, output_dir, ...)")
    t.add_argument("--nproc-per-node", type=int, default=1)
    t.add_argument("--set", **overrides)
    t.set_defaults(func=cmd_train)

    sv = sub.add_parser("serve", help="run one gRPC service")
    sv.add_argument("kind", choices=["generator", "reviser", "critic", "labeller"])
    sv.add_argument("--model", help="HF model dir (generator, reviser, reward-model critic)")
    sv.add_argument("--no-labels", action="store_true", help="reviser trained without labels (always revises)")
    sv.add_argument("--critic", choices=["rule", "reward-model"], help="critic / labeller backend")
    sv.add_argument("--callable", help="rule critic: package.module:function")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=50051)
    sv.add_argument("--port-file", help="write the bound port here once serving")
    sv.add_argument("--max-batch", type=int, default=256)
    sv.add_argument("--max-new-tokens", type=int, default=4096)
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SeftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
