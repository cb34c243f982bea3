"""The local executor's children forked from a preloaded fork server (seft.executors.forked):
services each serve with their own log; a service that cannot start says so with its log; when
the stage ends, or the executor is killed, its services are gone. A training of one process is
forked and trains as it would under torchrun; one that fails says why in its log. A stage's
trainings share the cores out, to the same bits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from seft.client import CriticClient, ReviserClient
from seft.errors import SeftError
from seft.executors import forked
from seft.executors.local import Context, child_env, start_training
from seft.labelling import Label
from seft.records import write_jsonl
from seft.spec import Critic, Sampling
from seft.specfile import load_spec
from seft.stages import Ref, ServiceSpec, Stage
from seft.storage import open_store
from seft.train import failure, torchrun_command, usable_cores

from helpers import ROOT, pids_holding, sort_prompts

pytestmark = pytest.mark.integration
PROMPT = [{"role": "user", "content": "Sort ascending : 2 1"}]
RULE = Critic(name="sort-rule", backend="rule", callable="seft.tasks.sorting:score")


def context(tmp_path: Path, services: dict) -> Context:
    spec = load_spec(ROOT / "examples" / "quickstart.yaml")
    store = open_store(f"file://{tmp_path}/runs", spec.name)
    return Context(spec, store, tmp_path, Stage("label", lambda ctx: {}, services=services), tmp_path / "out",
                   Console(quiet=True))


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def parent(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("\nPPid:\t", 1)[1].split()[0])


def test_forked_services_answer_log_and_are_gone_when_the_stage_ends(tmp_path, no_revise_reviser):
    ctx = context(tmp_path, {"reviser": ServiceSpec("reviser", Ref(None, str(no_revise_reviser))),
                             "critic": ServiceSpec("critic", critic=RULE)})
    logs = [tmp_path / "logs" / f"label-{name}.log" for name in ("reviser", "critic")]
    with ctx.services() as ep:
        with CriticClient(ep["critic"]) as critic, ReviserClient(ep["reviser"]) as reviser:
            assert critic.score([(PROMPT, "1 2"), (PROMPT, "2 1")]) == [1.0, 0.0]
            [revision] = reviser.revise([(PROMPT, "1 2")], Sampling(max_new_tokens=4, temperature=0.0))
            assert revision.label is Label.NO and (revision.text, revision.revised) == ("1 2", False)
        pids = [pids_holding(log) for log in logs]
        assert all(len(p) == 1 for p in pids), pids
        for [pid] in pids:  # children of the fork server, not of this process
            server = parent(pid)
            assert server != os.getpid() and b"forkserver" in Path(f"/proc/{server}/cmdline").read_bytes()
    assert not any(alive(pid) for [pid] in pids)
    assert all(log.read_text() for log in logs), [log.read_text() for log in logs]


def test_a_service_that_cannot_start_is_named_with_its_exit_code_and_log(tmp_path):
    ctx = context(tmp_path, {"reviser": ServiceSpec("reviser", Ref(None, str(tmp_path / "no-such-model")))})
    with pytest.raises(SeftError) as err:
        with ctx.services():
            pass
    message = str(err.value)
    assert "service 'reviser' exited with" in message and "while starting" in message, message
    assert str(tmp_path / "logs" / "label-reviser.log") in message and "no-such-model" in message


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from test_forked import context, RULE
from seft.stages import ServiceSpec
from pathlib import Path
with context(Path({tmp!r}), {{"critic": ServiceSpec("critic", critic=RULE)}}).services() as ep:
    print(ep["critic"], flush=True)
    time.sleep(600)  # SIGKILLed before
"""


def test_the_services_die_with_a_killed_executor(tmp_path):
    tests = str(Path(__file__).parent)
    code = CHILD.format(tests=tests, tmp=str(tmp_path))
    executor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), tests])})
    assert executor.stdout.readline().startswith("127.0.0.1:")  # serving
    log = tmp_path / "logs" / "label-critic.log"
    [pid] = pids_holding(log)
    executor.send_signal(signal.SIGKILL)
    executor.wait()
    deadline = time.monotonic() + 60  # the service watches the executor's pidfd
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid)


def train_config(tmp_path: Path, base_model: Path, name: str, rows: list[dict], **over) -> tuple[Path, Path]:
    out = tmp_path / name
    cfg = {"model": str(base_model), "data": str(tmp_path / f"{name}.jsonl"), "output_dir": str(out),
           "learning_rate": 1e-2, "max_steps": 12, "batch_size": 8, "per_device_batch_size": 8, "max_length": 64,
           "warmup_ratio": 0.0, "bf16": False, "nproc_per_node": 1, "logging_steps": 4, **over}
    write_jsonl(Path(cfg["data"]), rows)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, out


SFT_ROWS = [{"prompt": p, "completion": [{"role": "assistant", "content": " ".join(map(str, sorted(n)))}]}
            for p, n in sort_prompts(96)]


def test_a_single_process_training_is_forked_and_trains_as_under_torchrun(tmp_path, base_model):
    # ZeRO-2: DeepSpeed sets up its process group from the environment the fork is given.
    config, out = train_config(tmp_path, base_model, "forked", SFT_ROWS, deepspeed="zero2")
    proc = start_training(config, 1, tmp_path / "forked.log")
    assert isinstance(proc, forked.Forked)
    assert b"forkserver" in Path(f"/proc/{parent(proc.pid)}/cmdline").read_bytes()  # no launcher in between
    assert proc.wait(timeout=600) == 0, (tmp_path / "forked.log").read_text()[-3000:]
    twin, twin_out = train_config(tmp_path, base_model, "torchrun", SFT_ROWS, deepspeed="zero2")
    launched = subprocess.run(torchrun_command(twin, 1), env=child_env(), capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    summary, twin_summary = (json.loads((o / "train_summary.json").read_text()) for o in (out, twin_out))
    assert summary["world_size"] == 1 and summary["steps"] == 12 and len(summary["losses"]) == 3
    assert summary["losses"] == twin_summary["losses"]  # the same numbers, to the last digit
    assert (out / "model.safetensors").exists()
    assert "'loss'" in (tmp_path / "forked.log").read_text()  # the Trainer's lines reach its log


def test_a_forked_training_that_fails_says_why_in_its_log(tmp_path, base_model):
    config, out = train_config(tmp_path, base_model, "bad", [{"prompt": p} for p, _ in sort_prompts(8)])
    log = tmp_path / "bad.log"
    assert start_training(config, 1, log).wait(timeout=600) == 1
    why = failure(log.read_text())
    assert why is not None and "records need 'completion'" in why, log.read_text()[-3000:]
    assert not (out / "train_summary.json").exists()


def test_a_stage_shares_the_cores_among_its_trainings_and_they_train_alike(tmp_path, base_model, monkeypatch,
                                                                           every_core):
    """A training alone gets every core, two side by side share them, OMP_NUM_THREADS wins over
    the share. The same job on the same threads gives the same model, bit for bit; on other
    threads a close one (a reduction split among more threads may round otherwise: at the
    quickstart's size, one thread and two differ in the last bits on an Intel Xeon, README
    "Threads")."""
    from safetensors.torch import load
    from seft.settings import Training
    from seft.stages import TrainSpec

    monkeypatch.delenv("OMP_NUM_THREADS")  # the suite runs one thread each
    cores = usable_cores()
    training = Training(max_steps=12, batch_size=8, per_device_batch_size=8, learning_rate=1e-2, bf16=False,
                        deepspeed=None, logging_steps=4)
    spec = TrainSpec(Ref(None, str(base_model)), "d.jsonl", training)

    def run(stage: str, names: tuple[str, ...]) -> tuple[dict, dict]:
        out = tmp_path / stage
        out.mkdir()
        write_jsonl(out / "d.jsonl", SFT_ROWS)
        ctx = Context(load_spec(ROOT / "examples" / "quickstart.yaml"), None, tmp_path,
                      Stage(stage, lambda c: {}, trainings={n: spec for n in names}), out, Console(quiet=True))
        summaries = ctx.run_trainings()
        return ({n: s["threads"] for n, s in summaries.items()},
                {n: (out / n / "model.safetensors").read_bytes() for n in names})

    alone, alone_models = run("alone", ("m",))
    pair, pair_models = run("pair", ("m", "twin"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    told, told_models = run("told", ("m",))
    assert alone == {"m": cores} and pair == {"m": max(1, cores // 2), "twin": max(1, cores // 2)}
    assert told == {"m": 1}
    assert pair_models["m"] == pair_models["twin"]
    alone_weights, told_weights = load(alone_models["m"]), load(told_models["m"])
    assert alone_weights.keys() == told_weights.keys()
    for name, weight in alone_weights.items():
        assert (weight - told_weights[name]).abs().max().item() < 1e-4, name

