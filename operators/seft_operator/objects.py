"""The Kubernetes objects the operator creates for a SeftPipeline, as plain dicts (camelCase, ready
to send). Every object carries the pipeline's owner reference and labels; pods run as non-root
with explicit resources. PyTorchJobs are built with the kubeflow-training SDK's models.

Layout on the cluster, per pipeline NAME:
- ConfigMap NAME-spec: the pipeline spec (spec.yaml), mounted at /etc/seft in every pod.
- ConfigMap seft-deepspeed (shared): the DeepSpeed JSON configs, at /etc/seft/deepspeed.
- per service: Deployment + Service NAME-KIND-DIGEST, gRPC on 50051, metrics on 9090. Generators and
  revisers run vLLM's OpenAI-compatible server as a sidecar on 127.0.0.1:8000 and the gRPC
  service with `--backend openai`; an init container fetches the model from the store.
- per stage attempt: Job NAME-STAGE-N running `seft stage STAGE` (the stage's data work).
- per training attempt: PyTorchJob NAME-STAGE-JOB-N running `torchrun -m seft.train`."""

from __future__ import annotations

import hashlib
import json

import yaml

import seft.train
from seft.errors import SeftError
from seft.settings import Training
from seft.spec import Cluster, PipelineSpec, Resources
from seft.stages import TrainSpec, service_env
from seft_operator import GROUP, KIND, VERSION
from seft_operator.plan import Service

GRPC_PORT, METRICS_PORT, VLLM_PORT = 50051, 9090, 8000
SPEC_DIR, DEEPSPEED_DIR, MODEL_DIR = "/etc/seft", "/etc/seft/deepspeed", "/models/model"
DEEPSPEED_CONFIGMAP = "seft-deepspeed"
RUN_AS = 1000


def child_name(pipeline: dict, *parts: object) -> str:
    """NAME-PART-...; shortened (with a digest of the pipeline's name) to the 63 characters of a
    DNS label, which Services and the Job controller's job-name label need. Underscores in parts
    (stage and training names such as baseline_policies, sft_chosen) become hyphens."""
    name, suffix = pipeline["metadata"]["name"], "-".join(str(p) for p in parts).replace("_", "-")
    if len(name) + 1 + len(suffix) > 63:
        name = f"{name[:max(1, 55 - len(suffix))]}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    return f"{name}-{suffix}"


def owner_reference(pipeline: dict) -> dict:
    meta = pipeline["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _metadata(pipeline: dict, name: str, component: str, stage: str | None = None) -> dict:
    labels = {"app.kubernetes.io/name": "seft", "app.kubernetes.io/managed-by": "seft-operator",
              "app.kubernetes.io/component": component, "seft.dev/pipeline": pipeline["metadata"]["name"]}
    if stage:
        labels["seft.dev/stage"] = stage
    return {"name": name, "namespace": pipeline["metadata"]["namespace"], "labels": labels,
            "ownerReferences": [owner_reference(pipeline)]}


def _resources(r: Resources) -> dict:
    amounts = {"cpu": r.cpu, "memory": r.memory}
    if r.gpus:
        amounts["nvidia.com/gpu"] = str(r.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _container(name: str, image: str, command: list[str], resources: Resources, **extra) -> dict:
    return {"name": name, "image": image, "command": command, "resources": _resources(resources),
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            **extra}


def _store_env(cluster: Cluster) -> list[dict]:
    """Store credentials from the Secret, never from the spec."""
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": cluster.store_secret, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]


def _pod_spec(spec_configmap: str, containers: list[dict], init: list[dict] | None = None,
              restart: str = "Always", volumes: list[dict] | None = None) -> dict:
    pod = {"securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                               "seccompProfile": {"type": "RuntimeDefault"}},
           "restartPolicy": restart, "containers": containers,
           "volumes": [{"name": "spec", "configMap": {"name": spec_configmap}},
                       {"name": "tmp", "emptyDir": {}}, *(volumes or [])]}
    if init:
        pod["initContainers"] = init
    return pod


MOUNTS = [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]


def spec_configmap(pipeline: dict, spec: PipelineSpec) -> dict:
    data = spec.model_dump(mode="json", exclude_none=True)
    meta = _metadata(pipeline, child_name(pipeline, "spec"), "spec")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {"spec.yaml": yaml.safe_dump(data, sort_keys=False)}}


def deepspeed_configmap(namespace: str) -> dict:
    """The shared DeepSpeed configs (those `seft train` ships), for PyTorchJobs to mount."""
    configs = seft.train.DEEPSPEED_CONFIGS
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": DEEPSPEED_CONFIGMAP, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "seft"}},
            "data": {p.name: p.read_text() for p in sorted(configs.glob("*.json"))}}


def service_objects(pipeline: dict, spec: PipelineSpec, svc: Service) -> list[dict]:
    """Deployment + Service for one gRPC service. kind: generator | reviser (vLLM sidecar, model
    from the store) | critic | labeller (in-process rule or reward model)."""
    cluster, name = spec.cluster, child_name(pipeline, svc.id)
    kind, model_uri, critic = svc.kind, svc.model_uri, svc.critic
    meta = _metadata(pipeline, name, f"service-{kind}")
    meta["annotations"] = {"seft.dev/model": model_uri or ""}
    selector = {"seft.dev/pipeline": pipeline["metadata"]["name"], "seft.dev/service": svc.id}
    meta["labels"].update(selector)
    serve = ["seft", "serve", kind, "--host", "0.0.0.0", "--port", str(GRPC_PORT), "--metrics-port", str(METRICS_PORT)]
    init, containers, volumes = [], [], []
    if model_uri:  # the model comes from the store into an emptyDir shared by the pod's containers
        volumes.append({"name": "models", "emptyDir": {}})
        init.append(_container("fetch-model", cluster.image,
                               ["seft", "store", "cp", "--spec", f"{SPEC_DIR}/spec.yaml", model_uri, MODEL_DIR],
                               cluster.service, env=_store_env(cluster),
                               volumeMounts=[*MOUNTS, {"name": "models", "mountPath": "/models"}]))
    if kind in ("generator", "reviser"):
        containers.append(_container(
            "vllm", cluster.vllm_image,
            ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", MODEL_DIR,
             "--served-model-name", "model", "--host", "127.0.0.1", "--port", str(VLLM_PORT),
             "--tensor-parallel-size", str(max(1, cluster.vllm.gpus))],
            cluster.vllm, env=[{"name": "HOME", "value": "/tmp"}],
            volumeMounts=[{"name": "models", "mountPath": "/models", "readOnly": True},
                          {"name": "tmp", "mountPath": "/tmp"}],
            startupProbe={"httpGet": {"path": "/health", "port": VLLM_PORT}, "periodSeconds": 10,
                          "failureThreshold": 90}))  # large models load for minutes
        serve += ["--backend", "openai", "--openai-url", f"http://127.0.0.1:{VLLM_PORT}/v1",
                  "--served-model", "model", "--model", MODEL_DIR]
        if not svc.label_first:
            serve.append("--no-labels")
        if critic is not None:  # served beside the generator for self-refinement (SELF, EVOLVE)
            if critic.backend != "rule":
                raise SeftError(f"critic {critic.name!r}: a generator's critic on a cluster is a rule critic "
                                "for now (a reward model would need a second model in the pod)")
            serve += ["--critic", "rule", "--callable", critic.callable]
    else:
        assert critic is not None, f"a {kind} needs a critic"
        serve += ["--critic", critic.backend]
        serve += ["--callable", critic.callable] if critic.backend == "rule" else ["--model", MODEL_DIR]
    # gRPC health checking, by exec: native gRPC probes need Kubernetes 1.24+
    health = {"exec": {"command": ["python", "-m", "seft_services.health", f"127.0.0.1:{GRPC_PORT}"]},
              "timeoutSeconds": 10}
    mounts = [*MOUNTS, *([{"name": "models", "mountPath": "/models", "readOnly": True}] if model_uri else [])]
    containers.append(_container(
        "seft", cluster.image, serve, cluster.service, volumeMounts=mounts,
        ports=[{"name": "grpc", "containerPort": GRPC_PORT}, {"name": "metrics", "containerPort": METRICS_PORT}],
        readinessProbe={**health, "periodSeconds": 10, "failureThreshold": 3},
        livenessProbe={**health, "periodSeconds": 30, "failureThreshold": 6}))
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": meta["labels"]},
                              "spec": {**_pod_spec(child_name(pipeline, "spec"), containers, init, volumes=volumes),
                                       "terminationGracePeriodSeconds": 60}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(pipeline, name, f"service-{kind}"),
               "spec": {"selector": selector, "ports": [
                   {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "grpc"},
                   {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]}}
    return [deployment, service]


def endpoint(pipeline: dict, svc: Service) -> str:
    return f"{child_name(pipeline, svc.id)}.{pipeline['metadata']['namespace']}.svc:{GRPC_PORT}"


def stage_job(pipeline: dict, spec: PipelineSpec, stage: str, attempt: int, services: dict[str, Service]) -> dict:
    """The stage's data work as a batch Job (SEFT_SERVICE_<NAME> has each service's endpoint);
    the operator retries by creating attempt N+1, so the Job itself never retries."""
    cluster, name = spec.cluster, child_name(pipeline, stage, attempt)
    env = [*_store_env(cluster), *({"name": service_env(n), "value": endpoint(pipeline, s)}
                                   for n, s in services.items())]
    container = _container("stage", cluster.image, ["seft", "stage", stage, "--spec", f"{SPEC_DIR}/spec.yaml"],
                           cluster.stage, env=env, volumeMounts=MOUNTS)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(pipeline, name, "stage", stage),
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": _metadata(pipeline, name, "stage", stage)["labels"]},
                "spec": _pod_spec(child_name(pipeline, "spec"), [container], restart="Never")}}}


def train_job(spec: PipelineSpec, train: TrainSpec, model: str, data: str, output_dir: str) -> dict:
    """A `seft train` TrainJob for a PyTorchJob: model, data and output_dir are URIs in the
    pipeline's store; a named DeepSpeed config points into the mounted seft-deepspeed ConfigMap."""
    job = seft.train.train_job(train, spec.seed, model, data, output_dir, store=spec.store)
    if job.deepspeed in seft.train.NAMED_DEEPSPEED:
        job = job.model_copy(update={"deepspeed": f"{DEEPSPEED_DIR}/{job.deepspeed}.json"})
    return job.model_dump(mode="json")


def train_configmap(pipeline: dict, stage: str, jobs: dict[str, dict]) -> dict:
    """The TrainJob (train_job()) of each of a stage's trainings."""
    name = child_name(pipeline, stage, "train")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(pipeline, name, "training", stage),
            "data": {f"{job}.json": json.dumps(cfg, indent=2) for job, cfg in jobs.items()}}


def pytorchjob(pipeline: dict, spec: PipelineSpec, stage: str, job: str, training: Training, attempt: int) -> dict:
    """A Kubeflow PyTorchJob: `torchrun -m seft.train` on training_nodes x nproc_per_node, the
    DeepSpeed config from the seft-deepspeed ConfigMap (torchrun reads the PET_* variables the
    training operator sets)."""
    from kubeflow.training import models
    from kubernetes.client import ApiClient

    cluster = spec.cluster
    name = child_name(pipeline, stage, job, attempt)
    meta = _metadata(pipeline, name, "training", stage)
    container = _container("pytorch", cluster.image,  # Kubeflow expects the container named "pytorch"
                           ["torchrun", "-m", "seft.train", "--config", f"{SPEC_DIR}/train/{job}.json"],
                           cluster.training,
                           env=_store_env(cluster),
                           volumeMounts=[*MOUNTS, {"name": "train", "mountPath": f"{SPEC_DIR}/train", "readOnly": True},
                                         {"name": "deepspeed", "mountPath": DEEPSPEED_DIR, "readOnly": True},
                                         {"name": "dshm", "mountPath": "/dev/shm"}])
    volumes = [{"name": "train", "configMap": {"name": child_name(pipeline, stage, "train")}},
               {"name": "deepspeed", "configMap": {"name": DEEPSPEED_CONFIGMAP}},
               {"name": "dshm", "emptyDir": {"medium": "Memory"}}]  # NCCL needs more than 64 MiB of /dev/shm
    template = {"metadata": {"labels": meta["labels"]},
                "spec": _pod_spec(child_name(pipeline, "spec"), [container], restart="Never", volumes=volumes)}
    replicas = {"Master": models.KubeflowOrgV1ReplicaSpec(replicas=1, restart_policy="Never", template=template)}
    if cluster.training_nodes > 1:
        replicas["Worker"] = models.KubeflowOrgV1ReplicaSpec(replicas=cluster.training_nodes - 1,
                                                             restart_policy="Never", template=template)
    body = models.KubeflowOrgV1PyTorchJob(
        api_version="kubeflow.org/v1", kind="PyTorchJob", metadata=meta,
        spec=models.KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(training.nproc_per_node), pytorch_replica_specs=replicas,
            run_policy=models.KubeflowOrgV1RunPolicy(backoff_limit=0, clean_pod_policy="None")))
    return ApiClient().sanitize_for_serialization(body)  # camelCase, as the API server wants it
