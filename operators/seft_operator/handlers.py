"""kopf handlers: run a SeftPipeline's stages in order.

`kopf run --standalone --namespace NS -m seft_operator.handlers`. One timer per pipeline
reconciles it every SEFT_OPERATOR_INTERVAL seconds (default 5): everything it knows is in the
pipeline's status and in the names of its children (NAME-STAGE-ATTEMPT, ...), so an operator
restarted at any point creates nothing twice and carries on.

A stage: its services' StatefulSets ready, then its data Job, then its trainings (TrainJobs,
PyTorchJobs or Jobs: cluster.trainer). A failed Job or training is re-created (attempt N+1) up to
spec.cluster.retries times; then the stage and the pipeline are Failed with the child's reason
(a pod's OOMKilled included). Services no later stage needs are scaled to zero. The images and the
store Secret are the operator's (config.py): a pipeline naming others fails, creating nothing."""

from __future__ import annotations

import datetime
import functools
import json
import os

import kopf
import seft.train
from seft.errors import SpecError
from seft.recipes import stages_for
from seft.spec import PipelineSpec
from seft.specfile import parse_spec
from seft.stages import Ref, Stage

from seft_operator import GROUP, PLURAL, VERSION, config, objects, plan

INTERVAL = float(os.environ.get("SEFT_OPERATOR_INTERVAL", "5"))
DONE = ("Complete", "Failed")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.login()
def login(**kwargs):
    """In a pod its service account, else $KUBECONFIG (read now, not when a library was imported)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@functools.cache
def api():
    """A dynamic client: one way to create and read every kind, PyTorchJobs included."""
    from kubernetes import client, config, dynamic

    try:
        config.load_incluster_config()
        return dynamic.DynamicClient(client.ApiClient())
    except config.ConfigException:
        return dynamic.DynamicClient(config.new_client_from_config(config_file=os.environ.get("KUBECONFIG")))


def _resource(api_version: str, kind: str):
    return api().resources.get(api_version=api_version, kind=kind)


def ensure(obj: dict) -> dict:
    """Create obj, or return the existing object of that name (a restarted operator's retry).
    A ConfigMap's data is brought up to date: an edited spec reaches the stages still to run."""
    from kubernetes.dynamic.exceptions import ConflictError

    res = _resource(obj["apiVersion"], obj["kind"])
    meta = obj["metadata"]
    try:
        return res.create(body=obj, namespace=meta["namespace"]).to_dict()
    except ConflictError:
        current = res.get(name=meta["name"], namespace=meta["namespace"]).to_dict()
    if obj["kind"] == "ConfigMap" and current.get("data") != obj["data"]:
        current = res.patch(body={"data": obj["data"]}, name=meta["name"], namespace=meta["namespace"],
                            content_type="application/merge-patch+json").to_dict()
    return current


def outcome(child: dict) -> tuple[str | None, str]:
    """(Succeeded | Failed | None while running, reason) of a Job, TrainJob or PyTorchJob; a
    failed Job's reason says how its pod's containers ended (OOMKilled, exit codes)."""
    result, reason = _conditions(child)
    if result == "Failed" and child["kind"] == "Job":
        reason = "; ".join(filter(None, [reason, pod_failure(child["metadata"])]))
    return result, reason


def pod_failure(job_meta: dict) -> str:
    """How the containers of a Job's pods terminated, e.g. "pod X: container train OOMKilled (exit
    137)", with the last line the container logged (its termination message)."""
    pods = _resource("v1", "Pod").get(namespace=job_meta["namespace"], label_selector=f"job-name={job_meta['name']}")
    ends = []
    for pod in pods.to_dict()["items"]:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term and term.get("exitCode"):
                reason, log = term.get("reason", "Error"), term.get("message") or ""
                why = "" if reason == "OOMKilled" else (seft.train.failure(log) or log.strip().rsplit("\n", 1)[-1])
                ends.append(f"pod {pod['metadata']['name']}: container {cs['name']} {reason} "
                            f"(exit {term['exitCode']})" + (f": {why}" if why else ""))
    return "; ".join(ends)


def _conditions(child: dict) -> tuple[str | None, str]:
    status = child.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Succeeded"):
            return "Succeeded", ""
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return "Failed", f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".rstrip(": ")
    if child["kind"] == "Job" and status.get("succeeded"):
        return "Succeeded", ""
    if child["kind"] == "Job" and status.get("failed"):
        return "Failed", "the Job's pod failed"
    return None, ""


def set_condition(conditions: list[dict], type_: str, true: bool, reason: str, message: str,
                  generation: int) -> list[dict]:
    """The standard condition shape; lastTransitionTime moves only when the status flips."""
    status = "True" if true else "False"
    old = next((c for c in conditions if c["type"] == type_), None)
    changed = old is None or old["status"] != status
    cond = {"type": type_, "status": status, "reason": reason, "message": message, "observedGeneration": generation,
            "lastTransitionTime": now() if changed else old["lastTransitionTime"]}
    return [c for c in conditions if c["type"] != type_] + [cond]


class Run:
    """One reconcile of one pipeline: reads its children, creates what is due, updates `state`
    (the status's per-stage entries) and posts events."""

    def __init__(self, body: dict, spec: PipelineSpec, op: config.OperatorConfig, state: dict, logger):
        self.body, self.spec, self.op, self.state, self.logger = body, spec, op, state, logger
        self.pipeline = {"metadata": {"name": body["metadata"]["name"], "namespace": body["metadata"]["namespace"],
                                      "uid": body["metadata"]["uid"]}}

    def event(self, type_: str, reason: str, message: str) -> None:
        kopf.event(self.body, type=type_, reason=reason, message=message)

    def services(self, stage: Stage) -> dict[str, str] | None:
        """The stage's services by name -> endpoint, once every replica is ready; else None."""
        endpoints, ready = {}, True
        for name, svc in plan.services(self.spec, stage).items():
            statefulset, *services = objects.service_objects(self.pipeline, self.spec, self.op, svc)
            endpoints[name] = objects.endpoint([ensure(s) for s in services])
            current = ensure(statefulset)
            want = statefulset["spec"]["replicas"]
            if (current.get("spec") or {}).get("replicas", want) != want:  # scaled down earlier: needed again
                meta = current["metadata"]
                _resource("apps/v1", "StatefulSet").patch(body={"spec": {"replicas": want}}, name=meta["name"],
                                                         namespace=meta["namespace"])
                current["status"] = {}
            ready &= ((current.get("status") or {}).get("readyReplicas") or 0) >= want
        return endpoints if ready else None

    def retry(self, entry: dict, child: str, reason: str) -> bool:
        """A failed child: True if it gets another attempt."""
        if entry["attempt"] <= self.spec.cluster.retries:
            self.event("Warning", "ChildFailed", f"{child} failed ({reason}); retrying, attempt {entry['attempt'] + 1}")
            entry["attempt"] += 1
            return True
        entry["phase"], entry["reason"] = "Failed", f"{child} failed {entry['attempt']} times: {reason}"
        return False

    def step(self, stage: Stage) -> str:
        """Advance one stage; returns its phase."""
        st = self.state.setdefault(stage.name, {"phase": "Pending", "attempt": 1})
        if st["phase"] == "Pending":
            st["startedAt"] = now()
            self.event("Normal", "StageStarted", f"stage {stage.name}")
        endpoints = self.services(stage)
        if endpoints is None:
            st["phase"] = "WaitingForServices"
            return st["phase"]
        if not st.get("dataDone"):
            job = ensure(objects.stage_job(self.pipeline, self.spec, self.op, stage.name, st["attempt"], endpoints))
            result, reason = outcome(job)
            if result is None:
                st["phase"] = "Running"
                return st["phase"]
            if result == "Failed":
                if not self.retry(st, f"Job {job['metadata']['name']}", reason):
                    return self.fail(stage, st)
                return st["phase"]
            st["dataDone"] = True
        if stage.trainings and not self.train(stage, st):
            return st["phase"]
        st.update(phase="Succeeded", finishedAt=now(), artifact=plan.uri(self.spec, Ref(stage.name, "")))
        st.pop("reason", None)
        self.event("Normal", "StageSucceeded", f"stage {stage.name}: {st['artifact']}")
        return st["phase"]

    def train(self, stage: Stage, st: dict) -> bool:
        """Run the stage's trainings; True once all succeeded."""
        uri = functools.partial(plan.uri, self.spec)
        ensure(objects.train_configmap(self.pipeline, stage.name, {
            job: objects.train_job(self.spec, t, uri(t.model), uri(Ref(stage.name, t.data)), uri(Ref(stage.name, job)),
                                   plan.checkpoints_uri(self.spec, stage.name, job))
            for job, t in stage.trainings.items()}))
        done = True
        for job, t in stage.trainings.items():
            entry = st.setdefault("trainings", {}).setdefault(job, {"phase": "Pending", "attempt": 1})
            if entry["phase"] == "Succeeded":
                continue
            child = ensure(objects.training(self.pipeline, self.spec, self.op, stage.name, job, t.training,
                                            entry["attempt"]))
            result, reason = outcome(child)
            if result == "Succeeded":
                entry.update(phase="Succeeded", artifact=uri(Ref(stage.name, job)))
                continue
            done = False
            if result == "Failed" and not self.retry(entry, f"{child['kind']} {child['metadata']['name']}", reason):
                st["reason"] = entry["reason"]
                self.fail(stage, st)
                return False
            entry["phase"] = "Running" if result is None else "Retrying"
        if not done:
            st["phase"] = "Training"
        return done

    def fail(self, stage: Stage, st: dict) -> str:
        st.update(phase="Failed", finishedAt=now())
        self.event("Warning", "StageFailed", f"stage {stage.name}: {st.get('reason', '')}")
        return "Failed"

    def scale_down(self, keep: set[str]) -> None:
        """Services (StatefulSets) of this pipeline that no remaining stage needs go to zero."""
        deployments = _resource("apps/v1", "StatefulSet")
        listed = deployments.get(namespace=self.pipeline["metadata"]["namespace"],
                                 label_selector=f"seft.dev/pipeline={self.pipeline['metadata']['name']}")
        for item in listed.to_dict()["items"]:
            meta = item["metadata"]
            service = (meta.get("labels") or {}).get("seft.dev/service")
            if service and service not in keep and item["spec"].get("replicas"):
                deployments.patch(body={"spec": {"replicas": 0}}, name=meta["name"], namespace=meta["namespace"])
                self.logger.info("scaled %s to 0: no later stage needs it", meta["name"])


@kopf.timer(GROUP, VERSION, PLURAL, interval=INTERVAL, initial_delay=0)
def reconcile(body, spec, status, meta, patch, logger, **_) -> None:
    generation = meta.get("generation", 1)
    conditions = list(status.get("conditions") or [])
    if status.get("phase") in DONE and status.get("observedGeneration") == generation:
        return
    patch.status["observedGeneration"] = generation
    op = config.load()
    try:
        pipeline_spec = parse_spec({"name": meta["name"], **dict(spec)}, f"SeftPipeline {meta['name']}")
        pipeline_spec = pipeline_spec.model_copy(update={"cluster": op.admit(pipeline_spec.cluster)})
    except SpecError as exc:  # what the CRD schema cannot say (alpha <= beta, ...), or the operator refuses
        kopf.event(body, type="Warning", reason="InvalidSpec", message=str(exc))
        patch.status.update(phase="Failed", reason=str(exc), conditions=set_condition(
            set_condition(conditions, "Failed", True, "InvalidSpec", str(exc), generation),
            "Ready", False, "InvalidSpec", str(exc), generation))
        return
    state = json.loads(json.dumps(status.get("stages") or {}))  # a plain, mutable copy
    run = Run(dict(body), pipeline_spec, op, state, logger)
    ensure(objects.spec_configmap(run.pipeline, pipeline_spec))
    ensure(objects.deepspeed_configmap(meta["namespace"]))
    plan_stages = stages_for(pipeline_spec)
    phase, current = "Complete", None
    for i, stage in enumerate(plan_stages):
        if run.state.get(stage.name, {}).get("phase") == "Succeeded":
            continue
        current = stage.name
        result = run.step(stage)
        if result == "Succeeded":
            remaining = plan_stages[i + 1:]
            run.scale_down({s.id for st in remaining for s in plan.services(pipeline_spec, st).values()})
            phase = "Running" if remaining else "Complete"
            current = remaining[0].name if remaining else stage.name
        else:
            phase = "Failed" if result == "Failed" else "Running"
        break
    patch.status.update(stages=run.state, stage=current or plan_stages[-1].name, phase=phase)
    if phase == "Complete":
        run.scale_down(set())
        conditions = set_condition(conditions, "Complete", True, "AllStagesSucceeded",
                                   f"{len(plan_stages)} stages succeeded", generation)
        kopf.event(body, type="Normal", reason="Complete", message=f"{len(plan_stages)} stages succeeded")
    elif phase == "Failed":
        run.scale_down(set())
        reason = run.state[current].get("reason", "")
        patch.status["reason"] = reason
        conditions = set_condition(conditions, "Failed", True, "StageFailed", f"{current}: {reason}", generation)
    conditions = set_condition(conditions, "Ready", phase != "Failed", phase, f"stage {current}", generation)
    patch.status["conditions"] = conditions
