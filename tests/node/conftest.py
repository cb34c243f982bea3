"""The node tier: one real one-node Kubernetes (tests/kube_node.py) for the whole session,
with the namespace, CRD, store Secret, workload ServiceAccount and an S3 server pod the
operator's pipelines need. Skipped, saying why, where the node cannot run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kube_node
import pytest
import yaml
from nodetier import NS, S3_KEYS, Operator, harness_pod, wait

ROOT = Path(__file__).resolve().parents[2]


# Module-scoped, not session: under xdist (make test) the worker goes on to other tests once this
# module is done, and the node must be gone by then, its KUBECONFIG with it.
@pytest.fixture(scope="module")
def node(tmp_path_factory):
    reason = kube_node.why_not()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("node")
    n = kube_node.Node(work)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("KUBECONFIG", str(n.kubeconfig))
            yield n
    finally:
        n.stop()
    assert kube_node.leftovers(work.resolve()) == []  # torn down cleanly: processes, mounts, bridge, iptables


@pytest.fixture(scope="module")
def cluster(node, tmp_path_factory):
    """The namespace a pipeline runs in; returns the S3 endpoint (a ClusterIP) and the operator's
    configuration file: the harness image allowed, pod defaults that mount the host's Python."""
    api = node.api
    api.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "crd.yaml"))
    api.kubectl("create", "namespace", NS)
    api.kubectl("create", "serviceaccount", "seft-workload", "-n", NS)
    api.kubectl("patch", "serviceaccount", "seft-workload", "-n", NS, "-p", '{"automountServiceAccountToken": false}')
    api.kubectl("create", "secret", "generic", "seft-store", "-n", NS,
                *(f"--from-literal={k}={v}" for k, v in S3_KEYS.items()))
    # The store: moto's S3 server in a pod behind a Service, as MinIO would be.
    s3 = harness_pod("s3", ["moto_server", "-H", "0.0.0.0", "-p", "9000"])
    api.kubectl("apply", "-f", "-", input=json.dumps(s3))
    api.kubectl("expose", "pod", "s3", "-n", NS, "--port", "9000", "--name", "s3")
    ip = api.kubectl("get", "service", "s3", "-n", NS, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    endpoint = f"{ip}:9000"
    from minio import Minio

    client = Minio(endpoint, access_key=S3_KEYS["AWS_ACCESS_KEY_ID"], secret_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                   secure=False)

    last = []  # the client's last error

    def bucket():
        try:
            client.make_bucket("seft")
            return True
        except Exception as exc:  # noqa: BLE001 - the pod is still starting
            last[:] = [repr(exc)]
            return False

    try:
        wait("the in-cluster S3 server", bucket, timeout=120)
    except AssertionError as exc:  # say what the pod, the Service and kube-proxy's view of it were
        seen = [api.kubectl(*args, "-n", NS, check=False) for args in
                (("describe", "pod", "s3"), ("logs", "s3"), ("get", "endpoints,endpointslices", "-o", "yaml"))]
        nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
        rules = [rule for rule in nat.splitlines() if "seft/s3" in rule]
        raise AssertionError("\n".join([str(exc), *last, *(out.stdout + out.stderr for out in seen), *rules])) from None
    config = tmp_path_factory.mktemp("operator") / "config.yaml"
    config.write_text(yaml.safe_dump({
        "images": [kube_node.HARNESS], "vllm_images": [kube_node.HARNESS], "store_secret": "seft-store",
        "service_account": "seft-workload",
        "pod_defaults": {"volumes": kube_node.pod_defaults()["volumes"],
                         "volume_mounts": kube_node.pod_defaults()["volumeMounts"]}}))
    return {"endpoint": endpoint, "config": config}


@pytest.fixture
def operator(node, cluster, tmp_path):
    op = Operator(node, cluster["config"], tmp_path / "operator.log")
    yield op
    op.stop()
