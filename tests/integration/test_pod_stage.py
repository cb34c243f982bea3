"""What the operator's pods run, in the order the operator runs them, against a real S3 server:
`seft stage STAGE` (a stage Job: inputs from the store, services from SEFT_SERVICE_<NAME>) and
`torchrun -m seft.train` on the TrainJobs the operator writes (store URIs in, a published model
out). Only the pods' scheduling is missing: here they are subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from seft.records import read_jsonl
from seft.recipes import stages_for
from seft.specfile import load_spec
from seft.stages import Ref
from seft.storage import open_store
from seft_operator import objects, plan
from seft_services.backends.critics import RuleCritic
from seft_services.backends.transformers_lm import CausalLM, TransformersReviser
from seft_services.server import Server

from helpers import ROOT, kill_all, new_bucket

pytestmark = pytest.mark.integration


def tiny_spec(tmp_path, bucket: str, endpoint: str):
    data = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    data.update(name="tiny", store={"uri": f"s3://{bucket}", "endpoint": endpoint, "secure": False})
    data["bootstrap"].update(preference_prompts=60, unlabelled_prompts=8)
    for training in (data["bootstrap"]["policy_training"], data["bootstrap"]["generator_training"],
                     data["reviser_training"], data["policy_training"]):
        training.update(max_steps=2, batch_size=8, per_device_batch_size=8)
    data["data"]["test_size"] = 4
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def seft(*args, env=None):
    out = subprocess.run([sys.executable, "-m", "seft.cli", *args], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def train(tmp_path, spec, stage_name: str, job: str) -> None:
    """The PyTorchJob's command on the TrainJob the operator puts in its ConfigMap."""
    [stage] = [s for s in stages_for(spec) if s.name == stage_name]
    t = stage.trainings[job]
    config = objects.train_job(spec, t, plan.uri(spec, t.model), plan.uri(spec, Ref(stage_name, t.data)),
                               plan.uri(spec, Ref(stage_name, job)), plan.checkpoints_uri(spec, stage_name, job))
    path = tmp_path / f"{stage_name}-{job}.json"
    path.write_text(json.dumps(config))
    pod = tmp_path / f"pod-train-{stage_name}-{job}"  # the pod's working directory
    tmp = pod.with_name(f"{pod.name}-tmp")  # its temporary directory
    pod.mkdir()
    tmp.mkdir()
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                          "-m", "seft.train", "--config", str(path)], capture_output=True, text=True, timeout=600,
                         cwd=pod, env={**os.environ, "TMPDIR": str(tmp)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert list(pod.iterdir()) == []  # nothing written under a store URI taken for a local path ("s3:/...")
    assert not list(tmp.glob("seft-*"))  # nor its scratch: what it fetched and staged, its checkpoints


def test_stage_jobs_and_training_jobs_hand_artifacts_over_through_the_store(tmp_path, s3_server, s3_env):
    endpoint, _ = s3_server
    path = tiny_spec(tmp_path, new_bucket(endpoint), endpoint)
    spec = load_spec(str(path))
    store = open_store(spec.store, spec.name)

    seft("stage", "bootstrap", "--spec", str(path), "--workdir", str(tmp_path / "pod-1"))
    assert store.manifest("bootstrap") is not None and store.manifest("bootstrap/generator") is None
    for job in ("policy", "generator"):  # model: a path inside the bootstrap artifact
        train(tmp_path, spec, "bootstrap", job)
    generator = store.manifest("bootstrap/generator")
    assert "model.safetensors" in generator["files"] and "training_args.bin" not in generator["files"]

    seft("stage", "prepare", "--spec", str(path), "--workdir", str(tmp_path / "pod-2"))
    seft("stage", "warmup", "--spec", str(path), "--workdir", str(tmp_path / "pod-3"))
    train(tmp_path, spec, "warmup", "reviser")  # model: the nested artifact bootstrap/generator
    assert store.manifest("warmup/reviser") is not None

    # label's services, as the operator's Deployments would serve them
    from seft.executors.pod import PodContext
    [label] = [s for s in stages_for(spec) if s.name == "label"]
    ctx = PodContext(spec, store, tmp_path / "pod-4", label, tmp_path / "unused", None)
    warmup = ctx.input("warmup")
    assert (warmup / "train.jsonl").is_file() and (warmup / "reviser" / "config.json").is_file()
    critic = RuleCritic(spec.critics[0].callable)
    server = Server({"reviser": TransformersReviser(CausalLM(str(warmup / "reviser")), label_first=False),
                     "labeller": critic}).start()
    try:
        env = {"SEFT_SERVICE_REVISER": server.endpoint, "SEFT_SERVICE_LABELLER": server.endpoint}
        out = seft("stage", "label", "--spec", str(path), "--workdir", str(tmp_path / "pod-5"), env=env)
    finally:
        server.stop(grace=1)
    summary = json.loads(out.stdout)
    labelled = list(read_jsonl(store.fetch("label") / "labelled.jsonl"))
    adaptive = list(read_jsonl(store.fetch("prepare") / "adaptive.jsonl"))
    assert summary["samples"] == len(labelled) == len(adaptive) > 0
    assert {row["label"] for row in labelled} <= {"[Major Revise]", "[Minor Revise]", "[No Revise]"}
    manifest = store.manifest("label")
    assert set(manifest["inputs"]) == {"prepare", "warmup"}  # the fingerprint covers its inputs


def test_a_stage_job_refuses_unpublished_inputs_and_unknown_stages(tmp_path, s3_server, s3_env):
    endpoint, _ = s3_server
    path = tiny_spec(tmp_path, new_bucket(endpoint), endpoint)
    out = subprocess.run([sys.executable, "-m", "seft.cli", "stage", "label", "--spec", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "tiny/prepare is not published" in out.stderr
    out = subprocess.run([sys.executable, "-m", "seft.cli", "stage", "polish", "--spec", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "'polish': not a stage" in out.stderr


def test_a_retried_training_pod_resumes_from_the_checkpoint_in_the_store(tmp_path, s3_server, s3_env):
    """The operator's next attempt of a failed training is a new pod with the same config: it finds
    the last complete checkpoint in the store (not on the dead pod's disk) and resumes there."""
    import time

    endpoint, _ = s3_server
    path = tiny_spec(tmp_path, new_bucket(endpoint), endpoint)
    data = yaml.safe_load(path.read_text())
    data["reviser_training"].update(max_steps=200, save_steps=10, logging_steps=10)
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(str(path))
    store = open_store(spec.store, spec.name)
    seft("stage", "bootstrap", "--spec", str(path), "--workdir", str(tmp_path / "pod-1"))
    for job in ("policy", "generator"):
        train(tmp_path, spec, "bootstrap", job)
    seft("stage", "prepare", "--spec", str(path), "--workdir", str(tmp_path / "pod-2"))
    seft("stage", "warmup", "--spec", str(path), "--workdir", str(tmp_path / "pod-3"))

    [stage] = [s for s in stages_for(spec) if s.name == "warmup"]
    t = stage.trainings["reviser"]
    config = tmp_path / "warmup-reviser.json"
    config.write_text(json.dumps(objects.train_job(
        spec, t, plan.uri(spec, t.model), plan.uri(spec, Ref("warmup", t.data)),
        plan.uri(spec, Ref("warmup", "reviser")), plan.checkpoints_uri(spec, "warmup", "reviser"))))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "seft.train",
               "--config", str(config)]
    root = open_store(spec.store)
    marker = "tiny/checkpoints/warmup/reviser/checkpoint-10/seft-complete.json"
    with (tmp_path / "attempt-1.log").open("w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        deadline = time.monotonic() + 300
        while marker not in {k for k, _ in root.list("tiny/checkpoints/warmup/reviser")}:
            assert first.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "attempt-1.log").read_text()[-3000:]
            time.sleep(0.1)
        kill_all(str(config))  # the pod dies: torchrun and its worker
        first.wait()
    assert store.manifest("warmup/reviser") is None
    second = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # attempt 2
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stdout and "checkpoint-" in second.stdout
    assert store.manifest("warmup/reviser")["summary"]["steps"] == 200
    assert not [k for k, _ in root.list("tiny/checkpoints/warmup/reviser")]  # done: the store copy is gone
