"""The Kubernetes objects the operator creates for a SeftPipeline, as plain dicts (camelCase, ready
to send). Every object carries the pipeline's owner reference and labels; pods run as non-root
under the operator's workload ServiceAccount (no token mounted), with explicit resources, the
operator configuration's pod defaults, and only images that configuration allows (config.py).

Layout on the cluster, per pipeline NAME:
- ConfigMap NAME-spec: the pipeline spec (spec.yaml), mounted at /etc/seft in every pod.
- ConfigMap seft-deepspeed (shared): the DeepSpeed JSON configs, at /etc/seft/deepspeed.
- per service: StatefulSet NAME-KIND-DIGEST (cluster.replicas pods), gRPC on 50051, metrics on
  9090, a Service of that name over all its pods and one Service per pod (NAME-KIND-DIGEST-I), so
  a stage's client reaches each replica by a stable ClusterIP and spreads its calls over them
  (no cluster DNS needed). With serving vllm, generators and revisers run vLLM's OpenAI-compatible
  server as a sidecar on 127.0.0.1:8000 and the gRPC service with `--backend openai`; with
  serving transformers, in-process. An init container fetches the model from the store.
- per stage attempt: Job NAME-STAGE-N running `seft stage STAGE` (the stage's data work).
- per training attempt: NAME-STAGE-JOB-N running `torchrun -m seft.train`, as a TrainJob
  (Kubeflow Trainer v2), a PyTorchJob (Training Operator v1) or a batch Job (cluster.trainer)."""

from __future__ import annotations

import hashlib
import json

import seft.train
import yaml
from seft.errors import SeftError
from seft.settings import Training
from seft.spec import Cluster, PipelineSpec, Resources
from seft.stages import TrainSpec, service_env

from seft_operator import GROUP, KIND, VERSION
from seft_operator.config import OperatorConfig
from seft_operator.plan import Service

GRPC_PORT, METRICS_PORT, VLLM_PORT = 50051, 9090, 8000
SPEC_DIR, DEEPSPEED_DIR, MODEL_DIR = "/etc/seft", "/etc/seft/deepspeed", "/models/model"
DEEPSPEED_CONFIGMAP = "seft-deepspeed"
RUN_AS = 1000
RECONNECT_S = 300  # how long a stage's client waits for a replaced service pod (seft.client)


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
    return {"requests": dict(amounts), "limits": {**amounts, "cpu": r.cpu_limit or r.cpu}}


def _container(name: str, image: str, command: list[str], resources: Resources, op: OperatorConfig,
               env: list[dict] = (), volumeMounts: list[dict] = (), **extra) -> dict:
    """A container with the operator's pod defaults (env, mounts) after its own."""
    return {"name": name, "image": image, "command": command, "resources": _resources(resources),
            "env": [*env, *op.pod_defaults.env], "volumeMounts": [*volumeMounts, *op.pod_defaults.volume_mounts],
            "securityContext": CONTAINER_SECURITY,
            "terminationMessagePolicy": "FallbackToLogsOnError",  # a failed pod's last log lines reach the status
            **extra}


CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"}}


def _store_env(cluster: Cluster) -> list[dict]:
    """Store credentials from the operator's Secret (OperatorConfig.admit), never from the spec."""
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": cluster.store_secret, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]


def _pod_spec(pipeline: dict, op: OperatorConfig, containers: list[dict], init: list[dict] | None = None,
              restart: str = "Always", volumes: list[dict] | None = None) -> dict:
    """Every pod: the workload ServiceAccount with no token, non-root, the spec and a /tmp."""
    pod = {"serviceAccountName": op.service_account, "automountServiceAccountToken": False,
           "securityContext": POD_SECURITY, "restartPolicy": restart, "containers": containers,
           "volumes": [*_volumes(pipeline), *(volumes or []), *op.pod_defaults.volumes]}
    if init:
        pod["initContainers"] = init
    return pod


def _volumes(pipeline: dict) -> list[dict]:
    return [{"name": "spec", "configMap": {"name": child_name(pipeline, "spec")}}, {"name": "tmp", "emptyDir": {}}]


MOUNTS = [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]


def spec_configmap(pipeline: dict, spec: PipelineSpec) -> dict:
    """The spec the pods read: every field, nulls too (a null `deepspeed` is not the default)."""
    data = spec.model_dump(mode="json")
    meta = _metadata(pipeline, child_name(pipeline, "spec"), "spec")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {"spec.yaml": yaml.safe_dump(data, sort_keys=False)}}


def deepspeed_configmap(namespace: str) -> dict:
    """The shared DeepSpeed configs (those `seft train` ships), for trainings to mount."""
    configs = seft.train.DEEPSPEED_CONFIGS
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": DEEPSPEED_CONFIGMAP, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "seft"}},
            "data": {p.name: p.read_text() for p in sorted(configs.glob("*.json"))}}


def replicas(spec: PipelineSpec, svc: Service) -> int:
    return getattr(spec.cluster.replicas, svc.kind)


def service_objects(pipeline: dict, spec: PipelineSpec, op: OperatorConfig, svc: Service) -> list[dict]:
    """StatefulSet + Services for one gRPC service. kind: generator | reviser (a model from the
    store, served by vLLM or in-process) | critic | labeller (a rule or a reward model)."""
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
                               cluster.service, op, env=_store_env(cluster),
                               volumeMounts=[*MOUNTS, {"name": "models", "mountPath": "/models"}]))
    if kind in ("generator", "reviser"):
        if cluster.serving == "vllm":
            containers.append(_container(
                "vllm", cluster.vllm_image,
                ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", MODEL_DIR,
                 "--served-model-name", "model", "--host", "127.0.0.1", "--port", str(VLLM_PORT),
                 "--tensor-parallel-size", str(max(1, cluster.vllm.gpus))],
                cluster.vllm, op, env=[{"name": "HOME", "value": "/tmp"}],
                volumeMounts=[{"name": "models", "mountPath": "/models", "readOnly": True},
                              {"name": "tmp", "mountPath": "/tmp"}],
                startupProbe={"httpGet": {"path": "/health", "port": VLLM_PORT}, "periodSeconds": 10,
                              "failureThreshold": 90}))  # large models load for minutes
            serve += ["--backend", "openai", "--openai-url", f"http://127.0.0.1:{VLLM_PORT}/v1",
                      "--served-model", "model", "--model", MODEL_DIR]
        else:
            serve += ["--backend", "transformers", "--model", MODEL_DIR]
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
        "seft", cluster.image, serve, cluster.service, op, volumeMounts=mounts,
        ports=[{"name": "grpc", "containerPort": GRPC_PORT}, {"name": "metrics", "containerPort": METRICS_PORT}],
        readinessProbe={**health, "periodSeconds": 5, "failureThreshold": 3},
        livenessProbe={**health, "periodSeconds": 30, "failureThreshold": 6}))
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
        "spec": {"replicas": replicas(spec, svc), "serviceName": name, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": meta["labels"]},
                              "spec": {**_pod_spec(pipeline, op, containers, init, volumes=volumes),
                                       "terminationGracePeriodSeconds": 60}}}}
    ports = [{"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "grpc"},
             {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]
    services = [{"apiVersion": "v1", "kind": "Service", "metadata": _metadata(pipeline, name, f"service-{kind}"),
                 "spec": {"selector": selector, "ports": ports}}]
    for i in range(replicas(spec, svc)):  # one per pod: its stable address, whatever the pod's IP
        pod = f"{name}-{i}"
        services.append({"apiVersion": "v1", "kind": "Service",
                         "metadata": _metadata(pipeline, pod, f"service-{kind}"),
                         "spec": {"selector": {**selector, "statefulset.kubernetes.io/pod-name": pod},
                                  "ports": ports}})
    return [statefulset, *services]


def endpoint(services: list[dict]) -> str:
    """A stage's address of one service: the ClusterIPs of its per-pod Services (as created, so
    with spec.clusterIP), comma-separated; the client spreads calls over them (seft.client)."""
    return ",".join(f"{s['spec']['clusterIP']}:{GRPC_PORT}" for s in services[1:])


def stage_job(pipeline: dict, spec: PipelineSpec, op: OperatorConfig, stage: str, attempt: int,
              endpoints: dict[str, str]) -> dict:
    """The stage's data work as a batch Job (SEFT_SERVICE_<NAME>: each service's endpoint);
    the operator retries by creating attempt N+1, so the Job itself never retries."""
    cluster, name = spec.cluster, child_name(pipeline, stage, attempt)
    env = [*_store_env(cluster), *({"name": service_env(n), "value": e} for n, e in endpoints.items()),
           {"name": "SEFT_RECONNECT_S", "value": str(RECONNECT_S)}]  # ride out a service pod's replacement
    container = _container("stage", cluster.image, ["seft", "stage", stage, "--spec", f"{SPEC_DIR}/spec.yaml"],
                           cluster.stage, op, env=env, volumeMounts=MOUNTS)
    return _job(pipeline, name, "stage", stage, _pod_spec(pipeline, op, [container], restart="Never"))


def _job(pipeline: dict, name: str, component: str, stage: str, pod: dict) -> dict:
    meta = _metadata(pipeline, name, component, stage)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": meta["labels"]}, "spec": pod}}}


def train_job(spec: PipelineSpec, train: TrainSpec, model: str, data: str, output_dir: str,
              checkpoint_dir: str) -> dict:
    """A `seft train` TrainJob config: model, data, output_dir and checkpoint_dir are URIs in the
    pipeline's store; a named DeepSpeed config points into the mounted seft-deepspeed ConfigMap."""
    job = seft.train.train_job(train, spec.seed, model, data, output_dir, store=spec.store,
                               checkpoint_dir=checkpoint_dir)
    if job.deepspeed in seft.train.NAMED_DEEPSPEED:
        job = job.model_copy(update={"deepspeed": f"{DEEPSPEED_DIR}/{job.deepspeed}.json"})
    return job.model_dump(mode="json")


def train_configmap(pipeline: dict, stage: str, jobs: dict[str, dict]) -> dict:
    """The training config (train_job()) of each of a stage's trainings."""
    name = child_name(pipeline, stage, "train")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(pipeline, name, "training", stage),
            "data": {f"{job}.json": json.dumps(cfg, indent=2) for job, cfg in jobs.items()}}


def training(pipeline: dict, spec: PipelineSpec, op: OperatorConfig, stage: str, job: str, t: Training,
             attempt: int) -> dict:
    """One attempt of one training as the kind cluster.trainer names: `torchrun -m seft.train`
    on training_nodes x nproc_per_node, its config and the DeepSpeed configs mounted."""
    cluster = spec.cluster
    name = child_name(pipeline, stage, job, attempt)
    config = f"{SPEC_DIR}/train/{job}.json"
    mounts = [*MOUNTS, {"name": "train", "mountPath": f"{SPEC_DIR}/train", "readOnly": True},
              {"name": "deepspeed", "mountPath": DEEPSPEED_DIR, "readOnly": True},
              {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes = [{"name": "train", "configMap": {"name": child_name(pipeline, stage, "train")}},
               {"name": "deepspeed", "configMap": {"name": DEEPSPEED_CONFIGMAP}},
               {"name": "dshm", "emptyDir": {"medium": "Memory"}}]  # NCCL needs more than 64 MiB of /dev/shm
    if cluster.trainer == "job":
        command = ["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", str(t.nproc_per_node),
                   "-m", "seft.train", "--config", config]
        container = _container("train", cluster.image, command, cluster.training, op, env=_store_env(cluster),
                               volumeMounts=mounts)
        return _job(pipeline, name, "training", stage, _pod_spec(pipeline, op, [container], restart="Never",
                                                                  volumes=volumes))
    # the training operator sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_* for torchrun
    command = ["torchrun", "-m", "seft.train", "--config", config]
    if cluster.trainer == "trainjob":
        return _trainjob(pipeline, spec, op, name, stage, t, command, mounts, volumes)
    return _pytorchjob(pipeline, spec, op, name, stage, t, command, mounts, volumes)


def _pytorchjob(pipeline, spec, op, name, stage, t, command, mounts, volumes) -> dict:
    """Kubeflow Training Operator v1 (its release branch only; Trainer v2 replaces it)."""
    from kubeflow.training import models
    from kubernetes.client import ApiClient

    cluster = spec.cluster
    meta = _metadata(pipeline, name, "training", stage)
    container = _container("pytorch", cluster.image, command, cluster.training, op,  # Kubeflow's container name
                           env=_store_env(cluster), volumeMounts=mounts)
    template = {"metadata": {"labels": meta["labels"]},
                "spec": _pod_spec(pipeline, op, [container], restart="Never", volumes=volumes)}
    replicas_ = {"Master": models.KubeflowOrgV1ReplicaSpec(replicas=1, restart_policy="Never", template=template)}
    if cluster.training_nodes > 1:
        replicas_["Worker"] = models.KubeflowOrgV1ReplicaSpec(replicas=cluster.training_nodes - 1,
                                                              restart_policy="Never", template=template)
    body = models.KubeflowOrgV1PyTorchJob(
        api_version="kubeflow.org/v1", kind="PyTorchJob", metadata=meta,
        spec=models.KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(t.nproc_per_node), pytorch_replica_specs=replicas_,
            run_policy=models.KubeflowOrgV1RunPolicy(backoff_limit=0, clean_pod_policy="None")))
    return ApiClient().sanitize_for_serialization(body)  # camelCase, as the API server wants it


def _trainjob(pipeline, spec, op, name, stage, t, command, mounts, volumes) -> dict:
    """Kubeflow Trainer v2: the trainer (image, command, nodes, processes, resources, env) on a
    ClusterTrainingRuntime with the torch policy; everything else about the pod (volumes, mounts,
    labels, ServiceAccount, security) as a runtime patch of its `node` job. DeepSpeed runs under
    torchrun through the HF Trainer, so it needs no MPI runtime."""
    cluster = spec.cluster
    meta = _metadata(pipeline, name, "training", stage)
    pod = _pod_spec(pipeline, op, [{"name": "node", "volumeMounts": [*mounts, *op.pod_defaults.volume_mounts],
                                    "securityContext": CONTAINER_SECURITY}], volumes=volumes)
    del pod["restartPolicy"]
    patch = {"manager": "seft.dev/operator", "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
        {"name": "node", "template": {"metadata": {"labels": meta["labels"]},
                                      "spec": {"template": {"metadata": {"labels": meta["labels"]}, "spec": pod}}}}]}}}}
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": meta,
            "spec": {"runtimeRef": {"name": cluster.trainjob_runtime},
                     "trainer": {"image": cluster.image, "command": command, "numNodes": cluster.training_nodes,
                                 "numProcPerNode": t.nproc_per_node, "resourcesPerNode": _resources(cluster.training),
                                 "env": [*_store_env(cluster), *op.pod_defaults.env]},
                     "runtimePatches": [patch]}}
