"""A stage's start-up: the executor's forked services and trainings against fresh interpreters
(how they started before), side by side in turns.

    python bench/startup.py [--services 8] [--trainings 2] [--repeat 3]

Each round starts --services revisers on one tiny model and waits until every one is SERVING
(health check), once through the local executor's Context.services() (forked from the
preloaded fork server; its first start, which starts the fork server, is left out as a warm-up)
and once as `python -m seft.cli serve` subprocesses. Then --trainings one-step SFT trainings of
that model side by side until each has written its model, once by the executor's
start_training() (forked) and once under torchrun with one process. The median of each and
their ratio."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import grpc  # noqa: E402
import yaml  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from rich.console import Console  # noqa: E402

from seft.executors.local import Context, child_env, serve_argv, start_training  # noqa: E402
from seft.records import write_jsonl  # noqa: E402
from seft.spec import TinyModel  # noqa: E402
from seft.specfile import load_spec  # noqa: E402
from seft.stages import Ref, ServiceSpec, Stage  # noqa: E402
from seft.storage import open_store  # noqa: E402
from seft.tasks import spelling  # noqa: E402
from seft.tinymodel import build_model, build_tokenizer  # noqa: E402
from seft.train import torchrun_command  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def forked(work: Path, services: dict) -> float:
    spec = load_spec(ROOT / "examples" / "quickstart.yaml")
    ctx = Context(spec, open_store(f"file://{work}/runs", spec.name), work, Stage("label", lambda c: {}, services=services),
                  work / "out", Console(quiet=True))
    start = time.perf_counter()
    with ctx.services():
        return time.perf_counter() - start


def fresh(work: Path, services: dict) -> float:
    start, procs = time.perf_counter(), []
    for name, svc in services.items():
        port = work / f"{name}.port"
        port.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "seft.cli", *serve_argv(svc, svc.model.path, port, 256)]
        procs.append((subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=child_env()), port))
    try:
        for proc, port in procs:
            while not port.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"seft serve exited with {proc.returncode}")
                time.sleep(0.02)
            with grpc.insecure_channel(f"127.0.0.1:{port.read_text().strip()}") as channel:
                assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=60).status == 1
        return time.perf_counter() - start
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait()


def training_configs(work: Path, model: Path, n: int) -> list[Path]:
    """n one-step SFT TrainJobs of `model` on 64 spelling prompts."""
    import random

    rng = random.Random(0)
    data = work / "sft.jsonl"
    write_jsonl(data, ({"prompt": spelling.prompt_messages(words),
                        "completion": [{"role": "assistant", "content": " ".join(words)}]}
                       for words in (spelling.make_prompt(rng) for _ in range(64))))
    configs = []
    for i in range(n):
        path = work / f"train-{i}.yaml"
        path.write_text(yaml.safe_dump({"model": str(model), "data": str(data), "output_dir": str(work / f"trained-{i}"),
                                        "max_steps": 1, "batch_size": 8, "per_device_batch_size": 8,
                                        "bf16": False, "nproc_per_node": 1}))
        configs.append(path)
    return configs


def trainings(work: Path, configs: list[Path], how: str) -> float:
    start = time.perf_counter()
    if how == "forked":
        procs = [start_training(c, 1, work / f"{c.stem}.log") for c in configs]
    else:
        procs = [subprocess.Popen(torchrun_command(c, 1), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                  env=child_env()) for c in configs]
    codes = [proc.wait() for proc in procs]
    if any(codes):
        raise RuntimeError(f"a training exited with {codes} ({how})")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=8)
    parser.add_argument("--trainings", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_model(build_tokenizer(spelling.corpus_words()), TinyModel(), 0, work / "model")
        services = {f"reviser-{i}": ServiceSpec("reviser", Ref(None, str(model))) for i in range(args.services)}
        forked(work, services)  # starts the fork server
        configs = training_configs(work, model, args.trainings)
        times = {"forked": [], "fresh": [], "forked training": [], "torchrun": []}
        for _ in range(args.repeat):
            times["forked"].append(forked(work, services))
            times["fresh"].append(fresh(work, services))
            times["forked training"].append(trainings(work, configs, "forked"))
            times["torchrun"].append(trainings(work, configs, "torchrun"))
    median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"{args.services} revisers until SERVING (median of {args.repeat}): fresh interpreters "
          f"{median['fresh']:.2f} s, forked {median['forked']:.2f} s: {median['fresh'] / median['forked']:.1f}x")
    print(f"{args.trainings} one-step trainings side by side until done (median of {args.repeat}): torchrun "
          f"{median['torchrun']:.2f} s, forked {median['forked training']:.2f} s: "
          f"{median['torchrun'] / median['forked training']:.1f}x")


if __name__ == "__main__":
    main()
