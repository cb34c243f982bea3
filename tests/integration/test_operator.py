"""The operator (kopf, in-process) against a real kube-apiserver and etcd on loopback, with our
CRD and the real Kubeflow PyTorchJob (v1) and TrainJob (Trainer v2) CRDs applied: the played
tier. No kubelet or controllers run there, so the test plays the cluster: it marks StatefulSets
ready, Jobs complete and PyTorchJobs and TrainJobs Succeeded (or Failed) by writing their status.
Skipped, saying why, where no API server can be had (scripts/build_kube.sh builds one). The node
tier (tests/node/) runs real pods."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from kube import KubeAPI, crd_for_1_20, find_or_build

pytestmark = [pytest.mark.integration,  # the test API server's certificate is self-signed
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
              pytest.mark.xdist_group("kube")]  # under xdist, one worker starts the one API server
ROOT = Path(__file__).resolve().parents[2]
PYTORCHJOB_CRD = ROOT.parent / "shared" / "reference" / "kubeflow-training-v1.9" / "kubeflow.org_pytorchjobs.yaml"
TRAINJOB_CRD = ROOT.parent / "shared" / "reference" / "kubeflow-trainer-v2" / "trainer.kubeflow.org_trainjobs.yaml"
NS = "seft"
os.environ.setdefault("SEFT_OPERATOR_INTERVAL", "0.3")


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    binary, why = find_or_build()
    if binary is None:
        pytest.skip(why)
    for crd in (PYTORCHJOB_CRD, TRAINJOB_CRD):
        if not crd.exists():
            pytest.skip(f"no Kubeflow CRD at {crd}")
    api = KubeAPI(binary, tmp_path_factory.mktemp("kube"))
    os.environ["KUBECONFIG"] = str(api.kubeconfig)
    try:
        api.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "crd.yaml"))
        api.kubectl("create", "--validate=false", "-f", str(PYTORCHJOB_CRD))  # too large for client-side apply
        api.kubectl("create", "--validate=false", "-f", "-", input=crd_for_1_20(TRAINJOB_CRD))
        deadline = time.monotonic() + 60
        while True:  # kubectl wait fails outright while a new CRD has no status.conditions yet
            try:
                api.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/seftpipelines.seft.dev",
                            "crd/pytorchjobs.kubeflow.org", "crd/trainjobs.trainer.kubeflow.org")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        api.kubectl("create", "namespace", NS)
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def dyn(kube):
    from kubernetes import config, dynamic

    return dynamic.DynamicClient(config.new_client_from_config(config_file=str(kube.kubeconfig)))


KINDS = [("apps/v1", "StatefulSet"), ("batch/v1", "Job"), ("kubeflow.org/v1", "PyTorchJob"),
         ("trainer.kubeflow.org/v1alpha1", "TrainJob")]
MERGE = "application/merge-patch+json"


class Cluster(threading.Thread):
    """Plays the kubelet and the controllers for one pipeline: records its children in the order
    they appear, and finishes them. fail(kind, name) -> a reason to fail that child, or None."""

    def __init__(self, dyn, pipeline: str, fail=lambda kind, name: None):
        super().__init__(daemon=True)
        self.dyn, self.pipeline, self.fail = dyn, pipeline, fail
        self.created: list[tuple[str, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for api_version, kind in KINDS:
                res = self.dyn.resources.get(api_version=api_version, kind=kind)
                for item in res.get(namespace=NS, label_selector=f"seft.dev/pipeline={self.pipeline}").items:
                    name = item.metadata.name
                    if (kind, name) not in self.created:
                        self.created.append((kind, name))
                        self.finish(res, kind, name, item)
            time.sleep(0.1)

    def finish(self, res, kind: str, name: str, item) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reason = self.fail(kind, name)
        if kind == "StatefulSet":
            n = item.spec.replicas
            status = {"replicas": n, "readyReplicas": n, "currentReplicas": n, "updatedReplicas": n}
        elif kind == "Job":
            status = ({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "message": reason,
                                                     "reason": "BackoffLimitExceeded", "lastProbeTime": stamp,
                                                     "lastTransitionTime": stamp}]} if reason else
                      {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": stamp,
                                                       "lastTransitionTime": stamp}]})
        elif kind == "TrainJob":
            cond = ({"type": "Failed", "status": "True", "reason": "TrainingFailed", "message": reason} if reason
                    else {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "done"})
            status = {"conditions": [{**cond, "lastTransitionTime": stamp}]}
        else:
            cond = ({"type": "Failed", "status": "True", "reason": "PyTorchJobFailed", "message": reason} if reason
                    else {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded", "message": "done"})
            status = {"conditions": [{**cond, "lastUpdateTime": stamp, "lastTransitionTime": stamp}],
                      "replicaStatuses": {"Master": {"succeeded": 0 if reason else 1, "failed": 1 if reason else 0}}}
        res.status.patch(body={"status": status}, name=name, namespace=NS, content_type=MERGE)


def sample(name: str, file: str = "quickstart.yaml", **cluster) -> dict:
    doc = yaml.safe_load((ROOT / "manifests" / "samples" / file).read_text())
    doc["metadata"] = {"name": name, "namespace": NS}
    doc["spec"]["cluster"].update(cluster)
    return doc


def pipeline(dyn, name: str) -> dict:
    pipelines = dyn.resources.get(api_version="seft.dev/v1alpha1", kind="SeftPipeline")
    return pipelines.get(name=name, namespace=NS).to_dict()


def wait_for(dyn, name: str, until, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = pipeline(dyn, name)
        if until(body.get("status") or {}):
            return body
        assert time.monotonic() < deadline, f"timed out; status: {body.get('status')}"
        time.sleep(0.2)


def operator():
    from kopf.testing import KopfRunner

    return KopfRunner(["run", "--standalone", "--namespace", NS, "-m", "seft_operator.handlers"], timeout=60)


def plan_of(doc: dict):
    from seft.recipes import stages_for
    from seft.specfile import parse_spec
    from seft_operator import plan

    spec = parse_spec({"name": doc["metadata"]["name"], **doc["spec"]})
    return spec, [(s, plan.services(spec, s)) for s in stages_for(spec)], plan


def dns(stage: str) -> str:
    """A stage's name in its children's names (seft_operator.objects.child_name)."""
    return stage.replace("_", "-")


def create(dyn, doc: dict) -> None:
    dyn.resources.get(api_version="seft.dev/v1alpha1", kind="SeftPipeline").create(body=doc, namespace=NS)


TRAINING_KIND = {"trainjob": "TrainJob", "pytorchjob": "PyTorchJob", "job": "Job"}


@pytest.mark.parametrize("name, file, trainer", [
    ("qs-happy", "quickstart.yaml", "trainjob"), ("qs-pytorchjob", "quickstart.yaml", "pytorchjob"),
    ("qs-self", "quickstart-self.yaml", "job"), ("qs-evolve", "quickstart-evolve.yaml", "trainjob")])
def test_a_pipeline_runs_to_complete_with_children_in_order(kube, dyn, name, file, trainer):
    """SEFT, SELF and EVOLVE, each trainer kind: every stage's services, Job and trainings, in order."""
    doc = sample(name, file, trainer=trainer)
    cluster = Cluster(dyn, name)
    cluster.start()
    with operator() as runner:
        create(dyn, copy.deepcopy(doc))
        body = wait_for(dyn, name, lambda s: s.get("phase") in ("Complete", "Failed"))
    cluster.stop.set()
    assert runner.exception is None, runner.exception
    status = body["status"]
    assert status["phase"] == "Complete", status
    assert status["observedGeneration"] == body["metadata"]["generation"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True" and conditions["Ready"]["status"] == "True"
    assert all({"lastTransitionTime", "reason", "message"} <= c.keys() for c in status["conditions"])

    spec, stages, plan = plan_of(doc)
    order = [name for _, name in cluster.created]
    for i, (stage, services) in enumerate(stages):
        st = status["stages"][stage.name]
        assert st["phase"] == "Succeeded" and st["startedAt"] and st["finishedAt"]
        assert st["artifact"] == f"s3://seft/{name}/{stage.name}"
        job = order.index(f"{name}-{dns(stage.name)}-1")
        for svc in services.values():  # the stage's services exist before its Job
            assert order.index(f"{name}-{svc.id}") < job
        for train in stage.trainings:  # its trainings after its Job, before the next stage's Job
            pj = order.index(f"{name}-{dns(stage.name)}-{train}-1")
            assert cluster.created[pj][0] == TRAINING_KIND[trainer]
            assert job < pj
            assert st["trainings"][train] == {"phase": "Succeeded", "attempt": 1,
                                              "artifact": f"s3://seft/{name}/{stage.name}/{train}"}
            if i + 1 < len(stages):
                assert pj < order.index(f"{name}-{dns(stages[i + 1][0].name)}-1")
    stage_jobs = dyn.resources.get(api_version="batch/v1", kind="Job").get(
        namespace=NS, label_selector=f"seft.dev/pipeline={name},app.kubernetes.io/component=stage").items
    assert sorted(j.metadata.name for j in stage_jobs) == sorted(f"{name}-{dns(s.name)}-1" for s, _ in stages)
    deployments = dyn.resources.get(api_version="apps/v1", kind="StatefulSet").get(
        namespace=NS, label_selector=f"seft.dev/pipeline={name}").items
    assert len(deployments) == len({svc.id for _, services in stages for svc in services.values()})
    assert all(d.spec.replicas == 0 for d in deployments)  # nothing needs them any more
    [owner] = deployments[0].metadata.ownerReferences
    assert (owner.kind, owner.name, owner.uid) == ("SeftPipeline", name, body["metadata"]["uid"])
    events = kube.kubectl("get", "events", "-n", NS, "--field-selector", f"involvedObject.name={name}",
                          "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert events.count("StageSucceeded") == len(stages) and "Complete" in events

    table = kube.kubectl("get", "seftpipelines", "-n", NS).stdout.splitlines()
    assert table[0].split() == ["NAME", "STAGE", "PHASE", "AGE"]
    rows = [row.split()[:3] for row in table[1:] if row.startswith(name)]
    assert rows == [[name, "evaluate", "Complete"]]
    print("\n".join(table))  # for the README

    out = subprocess.run([sys.executable, "-m", "seft.cli", "status", name, "--kube", "-n", NS],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "Complete" in out.stdout and all(s.name in out.stdout for s, _ in stages)
    assert f"s3://seft/{name}/evaluate" in out.stdout


def test_a_restarted_operator_continues_without_duplicates(kube, dyn):
    cluster = Cluster(dyn, "qs-restart")
    cluster.start()
    with operator() as first:
        create(dyn, sample("qs-restart"))
        wait_for(dyn, "qs-restart", lambda s: (s.get("stages") or {}).get("label", {}).get("phase") == "Succeeded")
    assert first.exception is None
    mid = pipeline(dyn, "qs-restart")["status"]
    assert mid["phase"] == "Running" and mid["stages"]["label"]["phase"] == "Succeeded"
    with operator() as second:
        body = wait_for(dyn, "qs-restart", lambda s: s.get("phase") in ("Complete", "Failed"))
    cluster.stop.set()
    assert second.exception is None and body["status"]["phase"] == "Complete"
    names = [name for _, name in cluster.created]
    assert len(names) == len(set(names))
    assert not [n for n in names if n.endswith("-2")]  # no second attempt of anything


def test_a_failing_training_is_retried_then_fails_the_pipeline(kube, dyn):
    cluster = Cluster(dyn, "qs-fail", fail=lambda kind, name: "OOMKilled: rank 0 ran out of GPU memory"
                      if kind == "TrainJob" and "-warmup-" in name else None)
    cluster.start()
    with operator():
        create(dyn, sample("qs-fail", retries=1))
        body = wait_for(dyn, "qs-fail", lambda s: s.get("phase") in ("Complete", "Failed"))
    cluster.stop.set()
    status = body["status"]
    assert status["phase"] == "Failed" and status["stage"] == "warmup"
    warmup = status["stages"]["warmup"]
    assert warmup["phase"] == "Failed" and "failed 2 times" in warmup["reason"] and "OOMKilled" in warmup["reason"]
    assert warmup["trainings"]["reviser"]["attempt"] == 2
    assert "OOMKilled" in status["reason"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Failed"] == "True"
    tried = [n for k, n in cluster.created if k == "TrainJob" and "-warmup-" in n]
    assert tried == ["qs-fail-warmup-reviser-1", "qs-fail-warmup-reviser-2"]
    # Both attempts run one config, whose checkpoints are in the store: the second resumes from the
    # first's last complete one (what that config does: test_pod_stage, a retried training pod).
    trainjobs = dyn.resources.get(api_version="trainer.kubeflow.org/v1alpha1", kind="TrainJob")
    mounted = {json.dumps([v for v in trainjobs.get(name=n, namespace=NS).to_dict()["spec"]["runtimePatches"][0]
                           ["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]
                           ["template"]["spec"]["volumes"] if v["name"] == "train"]) for n in tried}
    [[volume]] = [json.loads(m) for m in mounted]
    configmap = dyn.resources.get(api_version="v1", kind="ConfigMap").get(
        name=volume["configMap"]["name"], namespace=NS).to_dict()
    config = json.loads(configmap["data"]["reviser.json"])
    assert config["checkpoint_dir"].startswith("s3://") and config["checkpoint_dir"].endswith(
        "/qs-fail/checkpoints/warmup/reviser"), config
    assert "label" not in status["stages"]  # nothing after the failed stage ran
    reasons = kube.kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.name=qs-fail",
                           "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "ChildFailed" in reasons and "StageFailed" in reasons


def test_the_api_server_refuses_an_invalid_spec_naming_the_field(kube, dyn):
    bad = sample("qs-bad")
    bad["spec"]["labelling"]["p"] = 2
    out = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert out.returncode != 0 and "spec.labelling.p" in out.stderr
    bad["spec"]["labelling"].update(p=0.5, alpha=0.9, beta=0.1)  # the schema cannot say alpha <= beta
    with operator():
        create(dyn, bad)
        body = wait_for(dyn, "qs-bad", lambda s: s.get("phase") == "Failed", timeout=60)
    assert "alpha (0.9) must not exceed beta (0.1)" in body["status"]["reason"]


def test_a_pipeline_naming_an_image_or_secret_the_operator_does_not_allow_fails_creating_nothing(kube, dyn):
    """No confused deputy: the pipeline's author cannot choose what the operator's pods run or read."""
    for name, field, value in [("qs-image", "image", "evil.example/miner:1"),
                               ("qs-secret", "store_secret", "someone-elses-keys")]:
        with operator():
            create(dyn, sample(name, **{field: value}))
            body = wait_for(dyn, name, lambda s: s.get("phase") == "Failed", timeout=60)
        assert f"spec.cluster.{field}: '{value}' is not allowed" in body["status"]["reason"]
        for api_version, kind in [("v1", "ConfigMap"), ("v1", "Service"), *KINDS]:
            made = dyn.resources.get(api_version=api_version, kind=kind).get(
                namespace=NS, label_selector=f"seft.dev/pipeline={name}").items
            assert made == [], (kind, [m.metadata.name for m in made])
