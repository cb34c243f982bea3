"""SeftPipelines on a real one-node Kubernetes: the operator (kopf, on the host) runs a small
quickstart whose services, stage Jobs and trainings are real pods, with the store an S3 server in
the cluster; faults are real (a process killed, a pod deleted, a container over its memory limit).
The pods run the harness image (tests/kube_node.py: the host's Python, mounted read-only)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import pids_with
from nodetier import NS, S3_KEYS, wait
from seft_operator.objects import SPEC_DIR

# One xdist group: the machine's one cluster serves every test here, on one worker.
pytestmark = [pytest.mark.node, pytest.mark.xdist_group("node"),
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]
ROOT = Path(__file__).resolve().parents[2]
SMALL_CPU = {"cpu": "100m", "cpu_limit": "2"}  # requests fit 2 cores; limits let each burst


def quickstart(name: str, endpoint: str, **cluster) -> dict:
    """manifests/samples/quickstart.yaml, made small (about 2 minutes of work on 2 cores), on
    the in-cluster S3 server, served in-process and trained by batch Jobs (no GPU, no Kubeflow)."""
    doc = yaml.safe_load((ROOT / "manifests" / "samples" / "quickstart.yaml").read_text())
    spec = doc["spec"]
    doc["metadata"] = {"name": name, "namespace": NS}
    spec["store"] = {"uri": "s3://seft", "endpoint": endpoint, "secure": False}
    spec["bootstrap"].update(preference_prompts=400, unlabelled_prompts=384)
    for training in (spec["bootstrap"]["policy_training"], spec["bootstrap"]["generator_training"],
                     spec["reviser_training"], spec["policy_training"]):
        training.update(max_steps=20, batch_size=32, per_device_batch_size=32, logging_steps=10)
    spec["data"]["test_size"] = 20
    spec["services"] = {"batch_size": 16}
    spec["cluster"] = {"serving": "transformers", "trainer": "job", "retries": 1,
                       "service": {**SMALL_CPU, "memory": "1Gi"}, "stage": {**SMALL_CPU, "memory": "2Gi"},
                       "training": {**SMALL_CPU, "memory": "3Gi"}, **cluster}
    return doc


def kubectl(node, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return node.api.kubectl(*args, "-n", NS, check=check)


def status(node, name: str) -> dict:
    out = kubectl(node, "get", "seftpipeline", name, "-o", "json", check=False)
    return (json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def stage_phase(node, name: str, stage: str) -> str | None:
    return (status(node, name).get("stages") or {}).get(stage, {}).get("phase")


def pods(node, selector: str) -> list[dict]:
    return json.loads(kubectl(node, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]


class PodWatch(threading.Thread):
    """`kubectl get pods` through the run: every (pod, phase) seen."""

    def __init__(self, node, pipeline: str):
        super().__init__(daemon=True)
        self.node, self.pipeline, self.seen, self.stop = node, pipeline, set(), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            out = kubectl(self.node, "get", "pods", "-l", f"seft.dev/pipeline={self.pipeline}", "--no-headers",
                          check=False)
            self.seen |= {(line.split()[0], line.split()[2]) for line in out.stdout.splitlines() if line.strip()}
            time.sleep(1)


def requests_served(pod: dict) -> float:
    """seft_requests_total of one service pod, from its metrics port."""
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:9090/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("seft_requests_total{") and 'code="OK"' in line)


def store(endpoint: str, name: str, monkeypatch):
    from seft.spec import StoreConfig
    from seft.storage import open_store

    for key, value in S3_KEYS.items():
        monkeypatch.setenv(key, value)
    return open_store(StoreConfig(uri="s3://seft", endpoint=endpoint, secure=False), name)


def test_a_quickstart_completes_on_the_node_through_faults(node, cluster, operator, tmp_path, monkeypatch):
    """The pipeline reaches Complete with real pods, while: a stage pod is killed mid-stage (retried),
    the operator is restarted (no duplicates), one of two reviser replicas is deleted mid-stage and
    the one generator pod is deleted mid-stage (each replaced; no item lost). Each of two reviser
    replicas serves at least 30% of a stage's calls."""
    name = "qs-node"
    doc = quickstart(name, cluster["endpoint"], replicas={"reviser": 2})
    watch = PodWatch(node, name)
    watch.start()
    node.api.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def service_pods(stage: str, kind: str) -> list[dict]:
        return [p for p in pods(node, f"seft.dev/service={service_of(node, name, stage, kind)}")
                if p["status"].get("podIP")]

    def served(stage: str, kind: str) -> list[tuple[dict, float]]:
        return [(p, requests_served(p)) for p in service_pods(stage, kind)]

    def midway(stage: str, kind: str) -> list[dict]:
        """The stage's `kind` pods, once its Job runs and they have served a call."""
        wait(f"{stage}'s Job", lambda: pods(node, f"seft.dev/pipeline={name},seft.dev/stage={stage},"
                                                  "app.kubernetes.io/component=stage"), timeout=900)
        return wait(f"{stage}'s first {kind} call", lambda: [p for p, n in served(stage, kind) if n > 0], timeout=300,
                    interval=0.2)

    # 1. A stage pod killed mid-stage: the label stage's process, SIGKILLed once it has called the
    # reviser. The stage may take only seconds, less than a poll of kubectl on a busy machine, so it
    # runs in slices of 0.1 s and is stopped (SIGSTOP) whenever the test looks: it cannot end unseen
    # between its first call and the kill. Its process is looked for in /proc, not through kubectl.
    # The pod's command line (objects.stage_job): the spec it mounts tells it from any other test's `seft stage`.
    [pid] = wait("the label stage's process", lambda: pids_with(f"seft stage label --spec {SPEC_DIR}/spec.yaml"),
                 timeout=900, interval=0.25)
    os.kill(pid, signal.SIGSTOP)
    revisers = wait("the label stage's reviser pods", lambda: service_pods("label", "reviser"))

    def called() -> bool:
        os.kill(pid, signal.SIGSTOP)
        if any(requests_served(p) > 0 for p in revisers):
            return True  # stopped: killed next
        os.kill(pid, signal.SIGCONT)
        return False

    os.kill(pid, signal.SIGCONT)
    wait("the label stage's first reviser call", called, timeout=300, interval=0.1)
    os.kill(pid, signal.SIGKILL)

    # 2. Two reviser replicas: each served at least 30% of the label stage's calls.
    wait("the label stage", lambda: stage_phase(node, name, "label") == "Succeeded", timeout=600)
    calls = [n for _, n in served("label", "reviser")]
    assert len(calls) == 2 and min(calls) >= 0.3 * sum(calls), calls

    # 3. The operator restarted mid-pipeline.
    wait("the adapt stage", lambda: stage_phase(node, name, "adapt") is not None, timeout=300)
    operator.stop()
    operator.start()

    def replace(pod: dict) -> None:
        """Delete a service pod now; its StatefulSet makes a new one of that name."""
        meta = pod["metadata"]
        selector = f"seft.dev/service={meta['labels']['seft.dev/service']}"
        kubectl(node, "delete", "pod", meta["name"], "--grace-period=0", "--force")
        wait(f"{meta['name']} replaced", lambda: [p for p in pods(node, selector)
                                                   if p["metadata"]["name"] == meta["name"]
                                                   and p["metadata"]["uid"] != meta["uid"]], timeout=120)

    # 4. One of two reviser replicas deleted mid-stage (internal: the adaptive reviser).
    replace(midway("internal", "reviser")[0])

    # 5. The only generator pod deleted mid-stage (external: the stronger generator).
    [generator] = midway("external", "generator")
    replace(generator)

    final = wait("Complete", lambda: status(node, name) if status(node, name).get("phase") in ("Complete", "Failed")
                 else None, timeout=1800, interval=2)
    watch.stop.set()
    assert final["phase"] == "Complete", json.dumps(final, indent=1) + operator.log.read_text()[-3000:]
    stages = final["stages"]
    retried = kubectl(node, "get", "events", "--field-selector", "reason=ChildFailed", "-o",
                      "jsonpath={range .items[*]}{.message}{'\\n'}{end}").stdout  # why each retry was
    assert stages["label"]["attempt"] == 2, retried  # the killed attempt, then its retry
    assert all(s["attempt"] == 1 for n, s in stages.items() if n != "label"), retried

    # No item lost: every original labelled, every prompt answered and revised, despite the deletions.
    s = store(cluster["endpoint"], name, monkeypatch)
    prepare = s.fetch("prepare")
    assert s.manifest("label")["summary"]["samples"] == lines_in(prepare / "adaptive.jsonl") > 0
    for stage in ("internal", "external"):
        assert lines_in(s.fetch(stage) / "revised.jsonl") == lines_in(prepare / "prompts.jsonl") > 0
    metrics = s.manifest("evaluate")["summary"]["metrics"]  # the report's numbers
    assert set(metrics["policy"]) == {"initial", "internal", "external"}
    assert set(metrics["reviser"]) == {"preliminary", "adaptive"}

    # No duplicates: one Job per stage attempt and per training, whatever the operator's restart.
    jobs = [j["metadata"]["name"] for j in json.loads(kubectl(node, "get", "jobs", "-l", f"seft.dev/pipeline={name}",
                                                              "-o", "json").stdout)["items"]]
    assert len(jobs) == len(set(jobs)) and f"{name}-label-2" in jobs and f"{name}-label-3" not in jobs
    assert not [j for j in jobs if j.endswith("-2") and j != f"{name}-label-2"], jobs

    # What users see: our pods ran, and `seft status --kube` shows every stage.
    phases = {phase for _, phase in watch.seen}
    assert {"Running", "Completed"} <= phases, watch.seen
    out = subprocess.run([sys.executable, "-m", "seft.cli", "status", name, "--kube", "-n", NS],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0 and all(stage in out.stdout for stage in stages), out.stdout + out.stderr

    # Every pod ran as the workload ServiceAccount with no API token.
    ran = pods(node, f"seft.dev/pipeline={name}")
    assert ran
    for pod in ran:
        assert pod["spec"]["serviceAccountName"] == "seft-workload"
        assert not any(m["mountPath"].startswith("/var/run/secrets") for c in pod["spec"]["containers"]
                       for m in c.get("volumeMounts", []))


def test_a_training_over_its_memory_limit_is_oom_killed_and_the_deleted_pipeline_takes_its_children(
        node, cluster, operator):
    name = "qs-oom"
    doc = quickstart(name, cluster["endpoint"], training={**SMALL_CPU, "memory": "250Mi"})
    node.api.kubectl("apply", "-f", "-", input=json.dumps(doc))
    final = wait("Failed", lambda: status(node, name) if status(node, name).get("phase") in ("Complete", "Failed")
                 else None, timeout=600, interval=1)
    assert final["phase"] == "Failed" and final["stage"] == "bootstrap", final
    assert "failed 2 times" in final["reason"] and "OOMKilled (exit 137)" in final["reason"], final["reason"]
    trainings = final["stages"]["bootstrap"]["trainings"]
    assert max(t["attempt"] for t in trainings.values()) == 2  # retried once (retries: 1)
    killed = [p for p in pods(node, f"seft.dev/pipeline={name},app.kubernetes.io/component=training")
              if p["status"]["containerStatuses"][0]["state"].get("terminated", {}).get("reason") == "OOMKilled"]
    assert len(killed) >= 2  # by the kernel, in the pod's memory cgroup

    # Deleting the pipeline deletes everything it made (owner references; the garbage collector).
    assert pods(node, f"seft.dev/pipeline={name}")
    kubectl(node, "delete", "seftpipeline", name)
    kinds = "statefulsets,services,jobs,configmaps,pods"
    wait("the pipeline's children gone", lambda: kubectl(node, "get", kinds, "-l", f"seft.dev/pipeline={name}",
                                                         "-o", "name").stdout.strip() == "", timeout=120)


def test_a_pipeline_naming_an_image_the_operator_does_not_allow_fails_creating_nothing(node, cluster, operator):
    name = "qs-evil"
    doc = quickstart(name, cluster["endpoint"], image="docker.io/library/busybox:latest")
    node.api.kubectl("apply", "-f", "-", input=json.dumps(doc))
    final = wait("Failed", lambda: status(node, name) if status(node, name).get("phase") == "Failed" else None,
                 timeout=120)
    assert "spec.cluster.image: 'docker.io/library/busybox:latest' is not allowed" in final["reason"]
    assert kubectl(node, "get", "all,configmaps", "-l", f"seft.dev/pipeline={name}", "-o", "name").stdout.strip() == ""


def lines_in(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def service_of(node, name: str, stage: str, kind: str) -> str:
    """The seft.dev/service label of the stage's service `kind` (the operator's plan)."""
    from seft.recipes import stages_for
    from seft.specfile import parse_spec
    from seft_operator import plan

    doc = json.loads(kubectl(node, "get", "seftpipeline", name, "-o", "json").stdout)
    spec = parse_spec({"name": name, **doc["spec"]})
    [st] = [s for s in stages_for(spec) if s.name == stage]
    return plan.services(spec, st)[kind].id
