"""The `seft` CLI's view of a cluster: read a SeftPipeline, submit one, read a stage's pod logs.
Uses $KUBECONFIG (or ~/.kube/config) and its current context unless one is named."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from seft.errors import SeftError
from seft.specfile import parse_spec

from seft_operator import GROUP, KIND, VERSION


def _client(context: str | None):
    from kubernetes import config, dynamic

    try:
        return dynamic.DynamicClient(config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"),
                                                                   context=context))
    except config.ConfigException as exc:
        raise SeftError(f"no Kubernetes context{f' {context!r}' if context else ''}: {exc}") from None


def _pipelines(context: str | None):
    return _client(context).resources.get(api_version=f"{GROUP}/{VERSION}", kind=KIND)


def get(name: str, namespace: str, context: str | None = None) -> dict:
    from kubernetes.dynamic.exceptions import NotFoundError

    try:
        return _pipelines(context).get(name=name, namespace=namespace).to_dict()
    except NotFoundError:
        raise SeftError(f"no SeftPipeline {name!r} in namespace {namespace!r}") from None


def submit(path: str, namespace: str, context: str | None = None) -> str:
    """Create the pipeline, or replace the spec of the one of that name (kubectl apply, simply).
    The spec is checked here first, so a bad field is named before anything is sent."""
    from kubernetes.dynamic.exceptions import ConflictError

    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise SeftError(f"{path}: expected a {KIND} manifest (apiVersion {GROUP}/{VERSION})")
    name = (doc.get("metadata") or {}).get("name")
    if not name:
        raise SeftError(f"{path}: metadata.name is required")
    parse_spec({"name": name, **(doc.get("spec") or {})}, path)
    doc["metadata"]["namespace"] = namespace
    pipelines = _pipelines(context)
    try:
        pipelines.create(body=doc, namespace=namespace)
        return f"seftpipeline.{GROUP}/{name} created"
    except ConflictError:
        pipelines.patch(body={"spec": doc["spec"]}, name=name, namespace=namespace,
                        content_type="application/merge-patch+json")
        return f"seftpipeline.{GROUP}/{name} configured"


def logs(name: str, stage: str | None, namespace: str, context: str | None = None) -> str:
    """The logs of the pipeline's stage pods (Jobs and PyTorchJobs), newest attempt last."""
    from kubernetes import client

    selector = f"seft.dev/pipeline={name}" + (f",seft.dev/stage={stage}" if stage else "")
    api = _client(context).client
    core = client.CoreV1Api(api)
    pods = sorted(core.list_namespaced_pod(namespace, label_selector=selector).items,
                  key=lambda p: p.metadata.creation_timestamp)
    if not pods:
        raise SeftError(f"no pods of pipeline {name!r}{f' stage {stage!r}' if stage else ''} in {namespace!r}")
    return "\n".join(f"==> {p.metadata.name} <==\n{core.read_namespaced_pod_log(p.metadata.name, namespace)}"
                     for p in pods)
