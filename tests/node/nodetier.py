"""The node tier's helpers: waiting, harness pods, the operator as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import kube_node

NS = "seft"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "node-tier", "AWS_SECRET_ACCESS_KEY": "node-tier-secret"}


def wait(what: str, check, timeout: float = 180, interval: float = 0.5):
    """check()'s first truthy value; fails naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def harness_pod(name: str, command: list[str], **spec) -> dict:
    """A pod of the harness image running the host's Python (a test harness)."""
    d = kube_node.pod_defaults()
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
            "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
                     "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True},
                     "containers": [{"name": name, "image": kube_node.HARNESS, "command": command,
                                     "volumeMounts": d["volumeMounts"]}], "volumes": d["volumes"], **spec}}


class Operator:
    """The operator as users run it: `kopf run` on the host, in its own process."""

    def __init__(self, node, config: Path, log: Path):
        self.env = {**os.environ, "KUBECONFIG": str(node.kubeconfig), "SEFT_OPERATOR_CONFIG": str(config),
                    "SEFT_OPERATOR_INTERVAL": "1"}
        self.log, self.proc = log, None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", NS, "-m", "seft_operator.handlers"],
            env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
