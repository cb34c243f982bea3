"""`seft train`: one training under torchrun (HF Trainer or TRL, optional DeepSpeed)."""

from __future__ import annotations

import os
from pathlib import Path

from seft.cli.args import OVERRIDES, positive
from seft.errors import SeftError


def cmd_train(args) -> int:
    from seft.specfile import load_yaml, validate
    from seft.train import TrainJob, torchrun_command, training_threads

    if not Path(args.config).exists():
        raise SeftError(f"--config {args.config!r}: no such file")
    job = validate(TrainJob, load_yaml(args.config, args.set), args.config)  # its errors before torchrun starts
    nproc = args.nproc_per_node or job.nproc_per_node
    cmd = torchrun_command(Path(args.config), nproc)
    for item in args.set:
        cmd += ["--set", item]
    os.environ.setdefault("OMP_NUM_THREADS", str(training_threads(nproc)))
    os.execv(cmd[0], cmd)


def register(sub) -> None:
    t = sub.add_parser("train", help="fine-tune under torchrun (HF Trainer, optional DeepSpeed)")
    t.add_argument("--config", required=True, help="TrainJob YAML/JSON (model, data, output_dir, ...)")
    t.add_argument("--nproc-per-node", type=positive, help="processes (default: the config's nproc_per_node, 1)")
    t.add_argument("--set", **OVERRIDES)
    t.set_defaults(func=cmd_train)
