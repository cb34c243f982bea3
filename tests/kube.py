"""A real kube-apiserver and etcd on loopback, for the operator's integration tests.

The binaries come from scripts/build_kube.sh (built once, cached). KubeAPI is an API server only:
no scheduler, kubelet or controllers, so the played tier writes the status of Deployments, Jobs,
PyTorchJobs and TrainJobs itself; tests/kube_node.py adds a real node to it."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build_kube.sh"


CACHE = Path(os.environ.get("SEFT_KUBE_CACHE", Path.home() / ".cache" / "seft-kube"))


def find_or_build(binary: str = "kube-apiserver") -> tuple[Path | None, str]:
    """(the cached binary, "") or (None, why not). Builds when SEFT_BUILD_KUBE=1 and it is missing
    (scripts/build_kube.sh builds all five binaries and installs the node's runtime)."""
    path = CACHE / binary
    if not path.exists() and os.environ.get("SEFT_BUILD_KUBE") == "1":
        out = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            return None, f"building the Kubernetes binaries failed: {out.stderr[-500:]}"
    if not path.exists():
        return None, f"no {binary} in {CACHE}: run {BUILD.relative_to(ROOT)} (or set SEFT_BUILD_KUBE=1)"
    binary = path
    if shutil.which("etcd") is None:
        return None, "no etcd on PATH (apt-get install etcd-server)"
    if shutil.which("kubectl") is None:
        return None, "no kubectl on PATH"
    return binary, ""


SERVICE_CIDR = "10.0.0.0/24"


def crd_for_1_20(path: Path) -> str:
    """A CRD file as this 1.20 API server takes it: without `default: ""` (1.20 reads an empty
    string default as null and refuses the CRD), so a list-map key that had one becomes required.
    Its CEL rules the server drops by itself."""
    import yaml

    def strip(node):
        if isinstance(node, list):
            return [strip(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: strip(v) for k, v in node.items() if not (k == "default" and v == "")}
        if out.get("x-kubernetes-list-map-keys") and "items" in out:
            items = out["items"]
            items["required"] = sorted(set(items.get("required", [])) | set(out["x-kubernetes-list-map-keys"]))
        return out

    return yaml.safe_dump(strip(yaml.safe_load(path.read_text())))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KubeAPI:
    """etcd + kube-apiserver in `work`; .kubeconfig authenticates as a cluster admin."""

    def __init__(self, binary: Path, work: Path, args: tuple[str, ...] = ()):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        etcd_port, peer_port = _free_port(), _free_port()
        self.etcd = subprocess.Popen(
            ["etcd", "--data-dir", str(work / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}"],
            stdout=(work / "etcd.log").open("w"), stderr=subprocess.STDOUT)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (work / "sa.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                                        serialization.NoEncryption()))
        (work / "sa.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
        self.token = os.urandom(16).hex()
        (work / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n")
        self.log = work / "apiserver.log"
        for attempt in range(3):  # a free port can be taken by another process before the server binds it
            self.port = _free_port()
            self.apiserver = subprocess.Popen(
                [str(binary), f"--etcd-servers=http://127.0.0.1:{etcd_port}", "--bind-address=127.0.0.1",
                 f"--secure-port={self.port}", f"--cert-dir={work / 'certs'}",
                 f"--token-auth-file={work / 'tokens.csv'}", "--authorization-mode=RBAC",
                 f"--service-account-key-file={work / 'sa.pub'}",
                 f"--service-account-signing-key-file={work / 'sa.key'}",
                 "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                 f"--service-cluster-ip-range={SERVICE_CIDR}", "--advertise-address=127.0.0.1", *args],
                stdout=self.log.open("w"), stderr=subprocess.STDOUT)
            try:
                self._wait_ready()
                break
            except RuntimeError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
        self.kubeconfig = work / "kubeconfig"
        self.kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "https://127.0.0.1:{self.port}", insecure-skip-tls-verify: true}}}}]
users: [{{name: admin, user: {{token: "{self.token}"}}}}]
contexts: [{{name: test, context: {{cluster: test, user: admin}}}}]
current-context: test
""")

    def _wait_ready(self, timeout: float = 60) -> None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}/readyz",
                                         headers={"Authorization": f"Bearer {self.token}"})
        deadline = time.monotonic() + timeout
        while True:
            if self.apiserver.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kube-apiserver not ready in {timeout} s: {self.log.read_text()[-2000:]}")
            time.sleep(0.3)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        out = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                             text=True, timeout=120, input=input)
        if check and out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
        return out

    def stop(self) -> None:
        for proc in (self.apiserver, self.etcd):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
