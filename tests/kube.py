"""A real kube-apiserver and etcd on loopback, for the operator's integration tests.

The API server binary comes from scripts/build_kube_apiserver.sh (built once, cached). It is an
API server only: no scheduler, kubelet or controllers, so tests play the cluster by writing the
status of Deployments, Jobs and PyTorchJobs themselves."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build_kube_apiserver.sh"


def cached_apiserver() -> Path | None:
    explicit = os.environ.get("SEFT_KUBE_APISERVER")
    if explicit:
        return Path(explicit)
    path = Path(os.environ.get("SEFT_KUBE_CACHE", Path.home() / ".cache" / "seft-kube")) / "kube-apiserver"
    return path if path.exists() else None


def find_or_build_apiserver() -> tuple[Path | None, str]:
    """(binary, "") or (None, why not). Builds when SEFT_BUILD_KUBE=1 and nothing is cached."""
    binary = cached_apiserver()
    if binary is None and os.environ.get("SEFT_BUILD_KUBE") == "1":
        out = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            return None, f"building kube-apiserver failed: {out.stderr[-500:]}"
        binary = Path(out.stdout.strip().splitlines()[-1])
    if binary is None:
        return None, f"no kube-apiserver: run {BUILD.relative_to(ROOT)} (or set SEFT_BUILD_KUBE=1)"
    if shutil.which("etcd") is None:
        return None, "no etcd on PATH (apt-get install etcd-server)"
    if shutil.which("kubectl") is None:
        return None, "no kubectl on PATH"
    return binary, ""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KubeAPI:
    """etcd + kube-apiserver in `work`; .kubeconfig authenticates as a cluster admin."""

    def __init__(self, binary: Path, work: Path):
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
                 "--service-cluster-ip-range=10.0.0.0/24", "--advertise-address=127.0.0.1"],
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
