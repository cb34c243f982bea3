"""`seft train`: one training entrypoint for every model the recipes fine-tune.

It is always launched by torchrun (`torchrun -m seft.train --config JOB.json`): locally as a
subprocess of the executor, on Kubernetes by a Kubeflow PyTorchJob. Data is TRL's
conversational JSONL: prompt-completion for `sft` (the loss on completion tokens only),
prompt-chosen-rejected for `dpo` and `orpo` (TRL's trainers, for the baseline policies)."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from seft.errors import SeftError
from seft.settings import Training
from seft.spec import StoreConfig

if TYPE_CHECKING:
    from seft.stages import TrainSpec

DEEPSPEED_CONFIGS = Path(__file__).parent / "deepspeed"
NAMED_DEEPSPEED = ("zero2", "zero3")  # `deepspeed: zero3` is DEEPSPEED_CONFIGS/zero3.json


class TrainJob(Training):
    model: str = Field(description="HF model directory to start from")
    data: str = Field(description="JSONL of {prompt, completion} conversations")
    output_dir: str = Field(description="where the trained HF model directory is saved")
    seed: int = 0
    method: Literal["sft", "dpo", "orpo"] = "sft"
    beta: float = Field(0.1, gt=0, allow_inf_nan=False, description="dpo: beta; orpo: lambda")
    add_tokens: list[str] = Field([], description="added to the tokenizer as special tokens, with the embeddings "
                                                  "resized, before training (the adaptive reviser's labels)")
    store: StoreConfig | None = Field(None, description="with it, model, data, output_dir and checkpoint_dir are "
                                                        "URIs in this store (a training pod's job): fetched, and the "
                                                        "output published")
    checkpoint_dir: str | None = Field(None, description="where checkpoints outlive the process (save_steps)")

    def columns(self) -> tuple[str, ...]:
        return ("prompt", "completion") if self.method == "sft" else ("prompt", "chosen", "rejected")

    def deepspeed_config(self) -> str | None:
        if self.deepspeed in NAMED_DEEPSPEED:
            return str(DEEPSPEED_CONFIGS / f"{self.deepspeed}.json")
        return self.deepspeed


def train_job(train: "TrainSpec", seed: int, model: str, data: str, output_dir: str, **fields) -> TrainJob:
    """The TrainJob of a stage's training, for either executor: local paths for `seft run`, store
    URIs (with `store=`) for a training pod."""
    return TrainJob(**train.training.model_dump(), model=model, data=data, output_dir=output_dir, seed=seed,
                    method=train.method, beta=train.beta, add_tokens=list(train.add_tokens), **fields)


RANK_PREFIX = re.compile(r"^\[rank\d+\]: ?")
LAUNCHER_FAILURE = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError"


def failure(log: str, frames: int = 3) -> str | None:
    """Why a `seft train` under torchrun failed, from its log: the last traceback of a worker (its
    last `frames` frames and the exception), or the worker's one-line `error: ...`, not
    torchrun's own ChildFailedError summary. None when the log has neither."""
    lines = [RANK_PREFIX.sub("", line) for line in log.splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    blocks = []
    for start in starts:
        end = next((j for j in range(start + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")), None)
        if end is not None and LAUNCHER_FAILURE not in lines[end]:
            frame_lines = [line for line in lines[start + 1:end] if line.startswith("  File ")]
            blocks.append("\n".join([lines[end], "last frames:", *frame_lines[-frames:]]))
    if blocks:
        return blocks[-1]
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else None


def torchrun_command(config_path: Path, nproc_per_node: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc_per_node}", "-m", "seft.train", "--config", str(config_path)]


def torch_threads(env: Mapping[str, str]) -> int:
    """A training process's torch threads: OMP_NUM_THREADS where set (the local executor's share,
    torchrun's 1 for several processes), else this node's share among its LOCAL_WORLD_SIZE
    processes: in a pod that honours its CPU quota, which torch's default (every core) does not."""
    value = env.get("OMP_NUM_THREADS", "").strip()
    if not value:
        return training_threads(int(env.get("LOCAL_WORLD_SIZE", "1")))
    first = value.split(",")[0]  # OpenMP allows a list, one count per nesting level
    if not first.isdigit() or int(first) < 1:
        raise SeftError(f"OMP_NUM_THREADS {value!r}: expected a number of threads, 1 or more")
    return int(first)


def training_threads(processes: int) -> int:
    """Torch threads for each of `processes` training processes that run at once: the cores this
    process may use, shared out. A training alone on 2 cores steps 1.5-2x faster on two threads
    than on one, to the same losses but not always the same bits (README "Threads"); more threads
    than cores make every process several times slower, so two trainings side by side get one each."""
    return max(1, usable_cores() // processes)


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may run on, capped by its container's CPU quota (cgroup v2 cpu.max,
    v1 cpu.cfs_quota_us), which the affinity does not show: a container limited to 2 CPUs on a
    64-core host would otherwise start 64 threads a training."""
    cores = len(os.sched_getaffinity(0))
    v2, v1 = cgroup / "cpu.max", cgroup / "cpu"
    try:
        quota, period = (v2.read_text().split() if v2.exists()
                         else [(v1 / f"cpu.cfs_{f}_us").read_text().strip() for f in ("quota", "period")])
        if quota in ("max", "-1"):
            return cores
        return max(1, min(cores, math.ceil(int(quota) / int(period))))  # a part of a CPU is a thread
    except (OSError, ValueError, ZeroDivisionError):  # no cpu controller, or files not understood: no cap
        return cores
