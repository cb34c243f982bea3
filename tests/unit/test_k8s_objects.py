"""The Kubernetes side without a cluster: the CRD generated from the pydantic spec, the samples,
every object the operator builds for them against real schemas (built-in kinds with
kubernetes-validate --strict, PyTorchJobs against the Kubeflow v1.9 CRD, TrainJobs against the
Kubeflow Trainer v2 CRD), the operator's configuration, and kustomize."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from seft.recipes import stages_for
from seft.specfile import parse_spec
from seft.stages import Ref
from seft.errors import SpecError
from seft_operator import objects, plan
from seft_operator.config import OperatorConfig, PodDefaults
from seft_operator.crd import crd, render

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SAMPLES = sorted((MANIFESTS / "samples").glob("*.yaml"))
SAMPLES = [p for p in SAMPLES if p.name != "kustomization.yaml"]
REFERENCE = ROOT.parent / "shared" / "reference"
PYTORCHJOB_CRD = REFERENCE / "kubeflow-training-v1.9" / "kubeflow.org_pytorchjobs.yaml"
TRAINJOB_CRD = REFERENCE / "kubeflow-trainer-v2" / "trainer.kubeflow.org_trainjobs.yaml"
TRAINERS = ["trainjob", "pytorchjob", "job"]
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the Kubeflow Training Operator v1.9 supports well


def as_jsonschema(node):
    """OpenAPI v3.0 (Kubernetes) to JSON Schema draft 4: `nullable` becomes a null alternative."""
    if isinstance(node, list):
        return [as_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_jsonschema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def validator(crd_doc: dict) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(as_jsonschema(crd_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))


SEFT = validator(crd())


def errors(v: jsonschema.Draft4Validator, obj: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_crd_file_is_generated_from_the_spec():
    assert (MANIFESTS / "base" / "crd.yaml").read_text() == render(), \
        "stale: python -m seft_operator.crd > manifests/base/crd.yaml"


def test_the_crd_schema_is_structural():
    """Kubernetes needs a type on every node and refuses $ref, const, and properties beside
    additionalProperties."""
    def walk(node, where):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{where}: no type"
        for key in ("$ref", "const", "anyOf", "oneOf", "allOf", "additionalProperties", "title"):
            assert key not in node, f"{where}: {key}"
        for name, prop in node.get("properties", {}).items():
            walk(prop, f"{where}.{name}")
        if "items" in node:
            walk(node["items"], f"{where}[]")

    walk(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")
    kubernetes_validate.validate(crd(), K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_samples_pass_the_crd_and_the_spec(path):
    sample = load(path)
    assert errors(SEFT, sample) == []
    spec = parse_spec({"name": sample["metadata"]["name"], **sample["spec"]}, str(path))
    assert spec.store.uri.startswith("s3://")


@pytest.mark.parametrize("change, where", [
    ({"labelling": {"p": 2}}, "spec.labelling.p"),
    ({"critics": [{"name": "x", "backend": "oracle", "callable": "a:b"}]}, "spec.critics.0.backend"),
    ({"reviser_training": {"learning_rate": "fast"}}, "spec.reviser_training.learning_rate"),
    ({"cluster": {"vllm": {"gpus": -1}}}, "spec.cluster.vllm.gpus"),
    ({"cluster": {"training": {"memory": "lots"}}}, "spec.cluster.training.memory"),
    ({"critics": []}, "spec.critics"),
])
def test_the_crd_refuses_a_bad_field_and_names_it(change, where):
    sample = load(MANIFESTS / "samples" / "quickstart.yaml")
    for key, value in change.items():
        sample["spec"][key] = {**sample["spec"][key], **value} if isinstance(value, dict) else value
    found = errors(SEFT, sample)
    assert found and all(e.startswith(where) for e in found), found


def built_objects(sample: dict, op: OperatorConfig = OperatorConfig(), **cluster) -> list[dict]:
    """Every object the operator creates for this pipeline: its plan, stage by stage (the
    Services as the API server returns them, with a ClusterIP)."""
    meta = {**sample["metadata"], "namespace": "seft", "uid": "0b6a3e2c-6d1f-4c1e-9a57-3f1d2c7b8e90"}
    pipeline = {**sample, "metadata": meta}
    spec = parse_spec({"name": meta["name"], **sample["spec"], "cluster": {**sample["spec"]["cluster"], **cluster}})
    spec = spec.model_copy(update={"cluster": op.admit(spec.cluster)})
    out = [objects.spec_configmap(pipeline, spec), objects.deepspeed_configmap("seft")]
    deployed: dict[str, list[dict]] = {}
    for stage in stages_for(spec):
        services = plan.services(spec, stage)
        for svc in services.values():
            if svc.id not in deployed:
                deployed[svc.id] = objects.service_objects(pipeline, spec, op, svc)
                out += deployed[svc.id]
        endpoints = {n: objects.endpoint([{**s, "spec": {**s["spec"], "clusterIP": f"10.0.0.{i}"}}
                                          for i, s in enumerate(deployed[svc.id][1:])])
                     for n, svc in services.items()}
        out.append(objects.stage_job(pipeline, spec, op, stage.name, 1, endpoints))
        if stage.trainings:
            out.append(objects.train_configmap(pipeline, stage.name, {
                job: objects.train_job(spec, t, plan.uri(spec, t.model), plan.uri(spec, Ref(stage.name, t.data)),
                                       plan.uri(spec, Ref(stage.name, job)),
                                       plan.checkpoints_uri(spec, stage.name, job))
                for job, t in stage.trainings.items()}))
            out += [objects.training(pipeline, spec, op, stage.name, job, t.training, attempt=1)
                    for job, t in stage.trainings.items()]
    return out


CRDS = {"PyTorchJob": PYTORCHJOB_CRD, "TrainJob": TRAINJOB_CRD}
KUBEFLOW = {kind: validator(load(path)) for kind, path in CRDS.items() if path.exists()}


def problems(obj: dict) -> list[str]:
    """What is wrong with one object against its schema: [] when it validates."""
    name = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
    if obj["kind"] in CRDS:
        return [f"{name}: {e}" for e in errors(KUBEFLOW[obj["kind"]], obj)] if obj["kind"] in KUBEFLOW else []
    if obj["kind"] == "SeftPipeline":
        return [f"{name}: {e}" for e in errors(SEFT, obj)]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{name}: {exc}"]
    return []


def check_all(objs: list[dict]) -> None:
    """Validate every object and report every failure together; PyTorchJobs and TrainJobs go
    unchecked (and the test is skipped, after the rest were checked) only where the Kubeflow CRD
    file is absent."""
    found = [p for obj in objs for p in problems(obj)]
    assert found == [], "\n".join(found)
    unchecked = sum(o["kind"] in CRDS and o["kind"] not in KUBEFLOW for o in objs)
    if unchecked:
        pytest.skip(f"{unchecked} Kubeflow jobs unchecked: no CRD at {', '.join(map(str, CRDS.values()))}")


def meta_name(obj: dict) -> str:
    return obj["metadata"]["name"]


def pods(obj: dict) -> list[dict]:
    if obj["kind"] == "PyTorchJob":
        return [r["template"]["spec"] for r in obj["spec"]["pytorchReplicaSpecs"].values()]
    if obj["kind"] == "TrainJob":  # the pod patch, with the trainer's container as Trainer v2 makes it
        [patch] = obj["spec"]["runtimePatches"]
        [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        pod = node["template"]["spec"]["template"]["spec"]
        trainer = obj["spec"]["trainer"]
        [container] = pod["containers"]
        return [{**pod, "containers": [{**container, "resources": trainer["resourcesPerNode"],
                                        "env": trainer["env"], "image": trainer["image"]}]}]
    if obj["kind"] in ("Deployment", "Job", "StatefulSet"):
        return [obj["spec"]["template"]["spec"]]
    return []


def containers(built: list[dict], name: str) -> list[dict]:
    return [c for o in built if o["kind"] == "StatefulSet" for c in o["spec"]["template"]["spec"]["containers"]
            if c["name"] == name]


def check_seft_objects(built: list[dict], spec, name: str, trainer: str) -> None:
    """What a SEFT pipeline's plan has: its trainings' shape, the vLLM sidecars, a Job per stage."""
    [job] = [o for o in built if o["metadata"]["name"] == f"{name}-warmup-reviser-1"]
    nproc = spec.reviser_training.nproc_per_node
    if trainer == "pytorchjob":
        assert job["kind"] == "PyTorchJob" and job["spec"]["nprocPerNode"] == str(nproc)
        assert ("Worker" in job["spec"]["pytorchReplicaSpecs"]) == (spec.cluster.training_nodes > 1)
    elif trainer == "trainjob":
        assert job["kind"] == "TrainJob" and job["spec"]["runtimeRef"] == {"name": "torch-distributed"}
        t = job["spec"]["trainer"]
        assert (t["numNodes"], t["numProcPerNode"]) == (spec.cluster.training_nodes, nproc)
        assert t["command"][:3] == ["torchrun", "-m", "seft.train"]
    else:
        [c] = job["spec"]["template"]["spec"]["containers"]
        assert job["kind"] == "Job" and c["command"][:6] == ["torchrun", "--standalone", "--nnodes", "1",
                                                             "--nproc-per-node", str(nproc)]
    vllm = containers(built, "vllm")
    assert len(vllm) == 6  # generator: policy, generator; reviser: preliminary, adaptive; policies after evolution
    assert all(c["resources"]["limits"].get("nvidia.com/gpu") == str(spec.cluster.vllm.gpus) for c in vllm)
    stage_jobs = [o["metadata"]["name"] for o in built if o["kind"] == "Job" and "seft.dev/stage" in o["metadata"]
                  ["labels"] and o["metadata"]["labels"]["app.kubernetes.io/component"] == "stage"]
    assert stage_jobs == [f"{name}-{s.name.replace('_', '-')}-1" for s in stages_for(spec)]


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_every_object_built_for_a_sample_validates(path, trainer):
    sample = load(path)
    built = built_objects(sample, trainer=trainer)
    for obj in built:
        if obj["metadata"]["name"] != objects.DEEPSPEED_CONFIGMAP:  # shared by the namespace's pipelines
            [owner] = obj["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["controller"]) == ("SeftPipeline", meta_name(sample), True)
        for pod in pods(obj):
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("seft-workload", False)
            for c in pod["containers"] + pod.get("initContainers", []):
                assert c["resources"]["requests"] and c["resources"]["limits"] == c["resources"]["requests"]
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["image"] in ("ghcr.io/seft-platform/seft:0.1.0", "vllm/vllm-openai:v0.11.0")
                assert not any("SECRET" in str(e.get("value", "")) for e in c.get("env", []))
                assert all(e["valueFrom"]["secretKeyRef"]["name"] == "seft-store" for e in c["env"]
                           if e["name"].startswith("AWS_"))
    spec = parse_spec({"name": sample["metadata"]["name"], **sample["spec"]})
    if spec.recipe == "seft":  # SELF and EVOLVE: test_self_and_evolve_plan_valid_objects_...
        check_seft_objects(built, spec, sample["metadata"]["name"], trainer)
    check_all(built)  # last: it skips where the Kubeflow CRD is absent


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_the_pods_read_the_very_spec_the_pipeline_has(path):
    """The spec ConfigMap parses back to the same spec (explicit nulls kept: `deepspeed: null`)."""
    sample = load(path)
    spec = parse_spec({"name": sample["metadata"]["name"], **sample["spec"]})
    [cm] = [o for o in built_objects(sample) if meta_name(o) == f"{meta_name(sample)}-spec"]
    assert parse_spec(yaml.safe_load(cm["data"]["spec.yaml"])) == spec.model_copy(
        update={"cluster": OperatorConfig().admit(spec.cluster)})


def test_the_baselines_plan_valid_objects_with_their_training_methods():
    import json

    sample = load(MANIFESTS / "samples" / "quickstart.yaml")
    sample["spec"]["baselines"] = {"beta": 0.2}  # every baseline, by default
    assert errors(SEFT, sample) == []
    built = built_objects(sample)
    [cm] = [o for o in built if meta_name(o) == "quickstart-baseline-policies-train"]
    jobs = {k.removesuffix(".json"): json.loads(v) for k, v in cm["data"].items()}
    assert {k: (v["method"], v["beta"]) for k, v in jobs.items()} == {
        "sft_chosen": ("sft", 0.2), "dpo": ("dpo", 0.2), "orpo": ("orpo", 0.2), "sft_generator": ("sft", 0.2),
        "external_only": ("sft", 0.2)}
    assert {v["model"] for v in jobs.values()} == {"s3://seft/quickstart/bootstrap/policy"}
    names = {meta_name(o) for o in built if o["kind"] == "TrainJob"}
    assert {"quickstart-baseline-revisers-aligner-1", "quickstart-baseline-policies-sft-chosen-1"} <= names
    assert len(containers(built, "vllm")) == 6 + 2 + 5  # and the baseline revisers and policies, served for evaluate
    check_all(built)  # names too (baseline_policies, sft_chosen: DNS labels); last, as it may skip


class Yaml12(yaml.SafeLoader):
    """kustomize writes 2e-05, a number in YAML 1.2 (and to Kubernetes) but a string to PyYAML."""


Yaml12.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                             list("-+0123456789."))


def kustomize(directory: Path) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.load_all(out.stdout, Loader=Yaml12) if d]


@pytest.mark.parametrize("overlay", ["", "overlays/minio", "samples"])
def test_kustomize_renders_every_overlay_into_valid_objects(overlay, tmp_path):
    directory = MANIFESTS / overlay
    if overlay == "overlays/minio":  # its Secret comes from a credentials.env the user writes
        copy = tmp_path / "manifests"
        shutil.copytree(MANIFESTS, copy)
        directory = copy / overlay
        (directory / "credentials.env").write_text((directory / "credentials.env.example").read_text())
    docs = kustomize(directory)
    kinds = {d["kind"] for d in docs}
    expected = {"": {"CustomResourceDefinition", "Deployment", "Role", "RoleBinding", "ServiceAccount", "Namespace"},
                "overlays/minio": {"StatefulSet", "Secret", "Service", "Job", "Deployment"},
                "samples": {"SeftPipeline"}}[overlay]
    assert expected <= kinds
    check_all(docs)
    for doc in docs:
        for pod in pods(doc):
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert all(c["resources"]["limits"] for c in pod["containers"])


def test_the_operator_role_is_namespaced_and_reads_no_secrets():
    docs = kustomize(MANIFESTS)
    assert not {"ClusterRole", "ClusterRoleBinding"} & {d["kind"] for d in docs}
    [role] = [d for d in docs if d["kind"] == "Role"]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert ("", "secrets") not in granted and ("", "pods/exec") not in granted
    assert ("kubeflow.org", "pytorchjobs") in granted and ("seft.dev", "seftpipelines/status") in granted
    assert ("trainer.kubeflow.org", "trainjobs") in granted and ("apps", "statefulsets") in granted
    pod_rules = [rule for rule in role["rules"] if "pods" in rule["resources"]]
    assert pod_rules and all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in pod_rules)
    [workload] = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "seft-workload"]
    assert workload["automountServiceAccountToken"] is False
    bound = {s["name"] for d in docs if d["kind"] == "RoleBinding" for s in d["subjects"]}
    assert "seft-workload" not in bound  # no permissions at all


@pytest.mark.parametrize("recipe", ["self", "evolve"])
def test_self_and_evolve_plan_valid_objects_whose_generators_serve_their_critic(recipe):
    import json

    sample = load(MANIFESTS / "samples" / f"quickstart-{recipe}.yaml")
    built = built_objects(sample)
    name = sample["metadata"]["name"]
    jobs = {meta_name(o) for o in built if o["kind"] == "TrainJob"}
    rounds = {f"{name}-round-1-policy-1", f"{name}-round-2-policy-1"}
    assert {f"{name}-meta-skill-policy-1"} | rounds <= jobs
    assert (f"{name}-meta-skill-dpo-policy-1" in jobs) == (recipe == "evolve")
    [cm] = [o for o in built if meta_name(o) == f"{name}-round-2-train"]
    job = json.loads(cm["data"]["policy.json"])  # round 2 continues round 1's model
    assert (job["model"], job["method"]) == (f"s3://seft/{name}/round_1/policy", "sft")
    serve = [c["command"] for c in containers(built, "seft")]
    assert serve and all(c[c.index("--critic"):c.index("--critic") + 4] ==
                         ["--critic", "rule", "--callable", "seft.tasks.sorting:score"] for c in serve)
    check_all(built)  # last: it skips where the Kubeflow CRD is absent


@pytest.mark.parametrize("field, value", [("image", "evil.example/miner:1"), ("vllm_image", "evil.example/vllm:1"),
                                          ("store_secret", "someone-elses-keys")])
def test_the_operator_refuses_an_image_or_secret_it_does_not_allow_naming_the_field(field, value):
    sample = load(MANIFESTS / "samples" / "quickstart.yaml")
    sample["spec"]["cluster"][field] = value
    with pytest.raises(SpecError, match=rf"spec\.cluster\.{field}: '{re.escape(value)}' is not allowed"):
        built_objects(sample)


def test_the_operator_configuration_decides_images_secret_and_pod_defaults():
    op = OperatorConfig(images=["registry.local/seft:2", "registry.local/seft:1"], store_secret="store-keys",
                        service_account="runner", pod_defaults=PodDefaults(
                            volumes=[{"name": "cache", "persistentVolumeClaim": {"claimName": "hf-cache"}}],
                            volume_mounts=[{"name": "cache", "mountPath": "/cache"}],
                            env=[{"name": "HF_HOME", "value": "/cache"}]))
    sample = load(MANIFESTS / "samples" / "quickstart.yaml")
    sample["spec"]["cluster"]["image"] = "registry.local/seft:1"  # allowed, not the default
    built = built_objects(sample, op)
    all_pods = [pod for obj in built for pod in pods(obj)]
    assert all_pods and all(p["serviceAccountName"] == "runner" for p in all_pods)
    assert all({"name": "cache", "persistentVolumeClaim": {"claimName": "hf-cache"}} in p["volumes"] for p in all_pods)
    for c in (c for p in all_pods for c in p["containers"] if c["name"] != "vllm"):
        assert c["image"] == "registry.local/seft:1"
        assert {"name": "cache", "mountPath": "/cache"} in c["volumeMounts"]
        assert {"name": "HF_HOME", "value": "/cache"} in c["env"]
        assert all(e["valueFrom"]["secretKeyRef"]["name"] == "store-keys"
                   for e in c["env"] if e["name"].startswith("AWS_"))
    check_all(built)


def test_serving_transformers_runs_generators_in_process_and_replicas_get_a_service_each():
    sample = load(MANIFESTS / "samples" / "quickstart.yaml")
    built = built_objects(sample, serving="transformers", replicas={"reviser": 3})
    assert containers(built, "vllm") == []
    serve = [c["command"] for c in containers(built, "seft") if c["command"][2] in ("generator", "reviser")]
    assert serve and all(c[c.index("--backend"):c.index("--backend") + 4] ==
                         ["--backend", "transformers", "--model", objects.MODEL_DIR] for c in serve)
    revisers = [o for o in built if o["kind"] == "StatefulSet" and o["metadata"]["labels"]
                ["app.kubernetes.io/component"] == "service-reviser"]
    assert revisers and all(o["spec"]["replicas"] == 3 for o in revisers)
    name = meta_name(revisers[0])
    per_pod = [o for o in built if o["kind"] == "Service" and meta_name(o).startswith(f"{name}-")]
    assert [o["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] for o in per_pod] == \
        [f"{name}-{i}" for i in range(3)]
    [label] = [o for o in built if o["kind"] == "Job" and meta_name(o) == "quickstart-label-1"]
    env = {e["name"]: e.get("value") for e in label["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SEFT_SERVICE_REVISER"] == "10.0.0.1:50051,10.0.0.2:50051,10.0.0.3:50051"  # not 10.0.0.0: all pods
    assert env["SEFT_SERVICE_LABELLER"] == "10.0.0.1:50051"
    check_all(built)


def test_a_multi_node_training_needs_a_training_operator():
    sample = load(MANIFESTS / "samples" / "quickstart.yaml")
    with pytest.raises(SpecError, match="training_nodes: 2 needs a training operator"):
        built_objects(sample, trainer="job", training_nodes=2)
