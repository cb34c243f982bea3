"""A real one-node Kubernetes on this machine, for the node tier (a test harness).

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and the node
(containerd, kubelet, kube-proxy) run as this process's children, on loopback; pods live on a
bridge network this harness creates, and a FORWARD rule drops anything from it that would leave
the bridge, so nothing is routed off the machine. No registry: images are one-layer OCI archives
imported into the node's containerd:
- seft-pause:1, the pod sandbox: a static C program that sleeps until SIGTERM;
- seft-harness:1, a tiny image that runs the host's Python: pods mount the host's /usr, the
  Python installation and this checkout (its venv inside) read-only at the same paths. The
  operator adds those mounts to every pod through its configuration (pod_defaults()).
No cluster DNS: pods reach Services by ClusterIP.

    python tests/kube_node.py up DIR     # prints the kubeconfig's path; `down DIR` stops it
Needs root, the binaries of scripts/build_kube.sh and cgroup v1 (kubelet 1.20)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from kube import CACHE, SERVICE_CIDR, KubeAPI, find_or_build

ROOT = Path(__file__).resolve().parents[1]
BINARIES = ("kube-apiserver", "kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy")
POD_CIDR, BRIDGE, GATEWAY = "10.244.0.0/24", "seftbr0", "10.244.0.1"
PAUSE, HARNESS = "docker.io/library/seft-pause:1", "docker.io/library/seft-harness:1"
CHAIN = "SEFT-NODE"  # this harness's own FORWARD rules
PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void done(int sig) { _exit(0); }
int main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }
"""


def why_not() -> str:
    """Why the node cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "the node tier needs root (containerd, kubelet, network namespaces)"
    if not Path("/sys/fs/cgroup/memory").is_dir():
        return "the node tier needs cgroup v1 (kubelet 1.20)"
    for binary in BINARIES:
        if find_or_build(binary)[0] is None:
            return find_or_build(binary)[1]
    for tool in ("containerd", "runc", "ctr", "iptables", "ip", "gcc"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH (scripts/build_kube.sh installs the node's runtime)"
    if not Path("/usr/lib/cni/bridge").exists():
        return "no CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)"
    return ""


def host_paths() -> list[str]:
    """What a harness pod mounts read-only: the host's /usr, Python and this checkout (its venv)."""
    paths = sorted({"/usr", os.path.realpath(sys.base_prefix), str(ROOT), os.path.realpath(sys.prefix)})
    return [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]


def pod_defaults() -> dict:
    """The operator configuration's pod_defaults that make seft-harness:1 run this checkout."""
    volumes = [{"name": f"host-{i}", "hostPath": {"path": p, "type": "Directory"}} for i, p in enumerate(host_paths())]
    mounts = [{"name": v["name"], "mountPath": v["hostPath"]["path"], "readOnly": True} for v in volumes]
    return {"volumes": volumes, "volumeMounts": mounts}


def _oci_archive(out: Path, name: str, files: dict[str, bytes | str], entrypoint: list[str] | None,
                 env: list[str]) -> None:
    """A one-layer OCI image archive for `ctr images import`. files: path -> bytes (a file,
    mode 0755) or str (a symlink to that target); a path ending in / is a directory."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path.rstrip("/"))
            if path.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if path == "tmp/" else 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_desc = blob(layer.getvalue())
    config = {"architecture": "amd64", "os": "linux", "config": {"Entrypoint": entrypoint, "Env": env},
              "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **blob(json.dumps(config).encode())},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}]}
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(json.dumps(manifest).encode()),
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.split(":")[-1]}}]}
    with tarfile.open(out, "w") as tar:
        entries = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
                   "index.json": json.dumps(index).encode(),
                   **{f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()}}
        for path, data in entries.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _images(work: Path) -> list[Path]:
    subprocess.run(["gcc", "-static", "-O2", "-o", str(work / "pause"), "-x", "c", "-"], input=PAUSE_C,
                   text=True, check=True)
    pause = work / "pause.tar"
    _oci_archive(pause, PAUSE, {"pause": (work / "pause").read_bytes()}, ["/pause"], [])
    venv_bin = os.path.join(sys.prefix, "bin")
    harness = work / "harness.tar"
    _oci_archive(harness, HARNESS, {
        "bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64",
        "usr/": b"", "tmp/": b"", "etc/": b"", "proc/": b"", "sys/": b"", "dev/": b"", "root/": b"",
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nseft:x:1000:1000:seft:/tmp:/bin/sh\n",
        "etc/group": b"root:x:0:\nseft:x:1000:\n",
        "etc/ld.so.cache": Path("/etc/ld.so.cache").read_bytes(),
    }, None, [f"PATH={venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "USER=seft", "OMP_NUM_THREADS=1",
              "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"])
    return [pause, harness]


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


class Node:
    """Start: Node(work). Stop: node.stop() (idempotent; also `python tests/kube_node.py down`)."""

    def __init__(self, work: Path):
        self.work = work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.netns_before = set(self._netns())
        self.ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    # -- start ---------------------------------------------------------------------------------
    def _spawn(self, name: str, *cmd: str) -> None:
        log = (self.work / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (self.work / "pids").open("a").write(f"{self.procs[name].pid} {name}\n")

    def _start(self) -> None:
        w = self.work
        self.api = KubeAPI(CACHE / "kube-apiserver", w / "api", args=(
            "--kubelet-preferred-address-types=Hostname,InternalIP", "--allow-privileged=false"))
        (w / "pids").open("a").write(f"{self.api.etcd.pid} etcd\n{self.api.apiserver.pid} kube-apiserver\n")
        self.kubeconfig = self.api.kubeconfig
        self._network()
        self._containerd()
        kc = str(self.kubeconfig)
        self._spawn("kube-controller-manager", str(CACHE / "kube-controller-manager"), f"--kubeconfig={kc}",
                    "--leader-elect=false", "--bind-address=127.0.0.1", "--port=0", "--secure-port=0",
                    f"--service-account-private-key-file={w / 'api' / 'sa.key'}",
                    f"--root-ca-file={w / 'api' / 'certs' / 'apiserver.crt'}",
                    "--use-service-account-credentials=false",
                    "--controllers=*,-nodeipam", "--node-monitor-grace-period=20s",
                    "--pod-eviction-timeout=5m")
        self._spawn("kube-scheduler", str(CACHE / "kube-scheduler"), f"--kubeconfig={kc}", "--leader-elect=false",
                    "--bind-address=127.0.0.1", "--port=0", "--secure-port=0")
        (w / "kubelet.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": "127.0.0.1", "port": 10250, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1",
            "cgroupDriver": "cgroupfs", "failSwapOn": False, "podCIDR": POD_CIDR,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},  # loopback only: the API server's logs and exec
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
            "imageGCHighThresholdPercent": 100, "serializeImagePulls": False,
            "syncFrequency": "5s", "fileCheckFrequency": "5s"}))
        self._spawn("kubelet", str(CACHE / "kubelet"), f"--kubeconfig={kc}", f"--config={w / 'kubelet.yaml'}",
                    f"--root-dir={w / 'kubelet'}", f"--cert-dir={w / 'kubelet' / 'pki'}",
                    "--hostname-override=localhost", "--container-runtime=remote",
                    f"--container-runtime-endpoint=unix://{w / 'containerd.sock'}",
                    f"--pod-infra-container-image={PAUSE}", "--register-node=true")
        # Endpoints, not EndpointSlices: this 1.20 controller manager at times (2 of ~10 runs on
        # 2026-12-06) left a Service's slice empty after its pod turned Ready, while the Service's
        # Endpoints listed the pod (read back from etcd two minutes on); kube-proxy then rejects calls.
        self._spawn("kube-proxy", str(CACHE / "kube-proxy"), f"--kubeconfig={kc}", "--hostname-override=localhost",
                    "--feature-gates=EndpointSliceProxying=false",
                    "--proxy-mode=iptables", f"--cluster-cidr={POD_CIDR}", "--conntrack-max-per-core=0",
                    "--bind-address=127.0.0.1", "--healthz-bind-address=127.0.0.1:10256",
                    "--metrics-bind-address=127.0.0.1:10249")
        self.wait_ready()

    def _network(self) -> None:
        """The pods' bridge network (CNI config), with forwarding on but confined to the bridge."""
        cni = self.work / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-seft.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "seft", "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                          "routes": [{"dst": SERVICE_CIDR}],  # Services only: pods have no default route
                          "dataDir": str(self.work / "cni-ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}))
        _run("iptables", "-N", CHAIN, check=False)
        _run("iptables", "-F", CHAIN)
        _run("iptables", "-A", CHAIN, "-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP")
        _run("iptables", "-A", CHAIN, "-d", POD_CIDR, "!", "-i", BRIDGE, "-j", "DROP")
        if _run("iptables", "-C", "FORWARD", "-j", CHAIN, check=False).returncode:
            _run("iptables", "-I", "FORWARD", "1", "-j", CHAIN)
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")  # pod -> ClusterIP -> pod crosses the host

    def _containerd(self) -> None:
        w = self.work
        (w / "containerd.toml").write_text(f"""version = 2
root = "{w / 'containerd' / 'root'}"
state = "{w / 'containerd' / 'state'}"
[grpc]
  address = "{w / 'containerd.sock'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{w / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
""")
        self._spawn("containerd", "containerd", "--config", str(w / "containerd.toml"))
        sock = w / "containerd.sock"
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.procs["containerd"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start: {(w / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        for archive in _images(w):
            _run("ctr", "--address", str(sock), "-n", "k8s.io", "images", "import", "--no-unpack", str(archive))

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {(self.work / f'{name}.log').read_text()[-2000:]}")
            out = self.api.kubectl("get", "node", "localhost", "-o",
                                   "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            sa = self.api.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            if out.stdout.strip() == "True" and sa.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"node not Ready in {timeout} s: {(self.work / 'kubelet.log').read_text()[-2000:]}")
            time.sleep(0.5)

    # -- stop ----------------------------------------------------------------------------------
    @staticmethod
    def _netns() -> list[str]:
        return [p.name for p in Path("/var/run/netns").glob("cni-*")] if Path("/var/run/netns").is_dir() else []

    def stop(self) -> None:
        """Pods first (so the kubelet releases their network), then every process by pid, then the
        mounts, network namespaces, bridge and iptables chains this node made."""
        api = getattr(self, "api", None)
        if api is not None and self.procs.get("kubelet") and self.procs["kubelet"].poll() is None:
            api.kubectl("delete", "pods", "--all", "--all-namespaces", "--force", "--grace-period=0",
                        "--wait=false", check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self._tasks():
                time.sleep(0.5)
        teardown(self.work, self.netns_before, self.ip_forward)

    def _tasks(self) -> list[str]:
        out = _run("ctr", "--address", str(self.work / "containerd.sock"), "-n", "k8s.io", "tasks", "ls", "-q",
                   check=False)
        return out.stdout.split()


def teardown(work: Path, netns_before: set[str] | None = None, ip_forward: str = "0") -> None:
    """Stop what `work/pids` names (newest first), and remove what the node left behind."""
    pids = work / "pids"
    if pids.exists():
        for line in reversed(pids.read_text().splitlines()):
            pid, name = int(line.split()[0]), line.split()[1]
            if name == "containerd":  # its shims and containers go with it
                sock = work / "containerd.sock"
                for task in _run("ctr", "--address", str(sock), "-n", "k8s.io", "tasks", "ls", "-q",
                                 check=False).stdout.split():
                    _run("ctr", "--address", str(sock), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", task,
                         check=False)
            _stop_pid(pid)
        for shim in _run("pgrep", "-f", f"containerd-shim.*{work}", check=False).stdout.split():
            _stop_pid(int(shim))
        pids.unlink()
    if shutil.which("kube-proxy") or (CACHE / "kube-proxy").exists():
        _run(str(CACHE / "kube-proxy"), "--cleanup", check=False)  # its KUBE-* iptables chains
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(str(work) + "/"):
            _run("umount", "-l", target, check=False)
    netns_before = netns_before or set()
    for ns in Node._netns():
        if ns not in netns_before:
            _run("ip", "netns", "delete", ns, check=False)
    _run("ip", "link", "delete", BRIDGE, check=False)
    _run("iptables", "-D", "FORWARD", "-j", CHAIN, check=False)
    _run("iptables", "-F", CHAIN, check=False)
    _run("iptables", "-X", CHAIN, check=False)
    for table in ("filter", "nat"):  # the kubelet's and CNI's chains (a test machine has no others)
        rules = _run("iptables", "-t", table, "-S", check=False).stdout.splitlines()
        for rule in rules:
            if rule.startswith("-A ") and any(c in rule for c in ("KUBE-", "CNI-")):
                _run("iptables", "-t", table, *rule.replace("-A ", "-D ", 1).split(), check=False)
        for rule in rules:
            if rule.startswith("-N ") and rule.split()[1].startswith(("KUBE-", "CNI-")):
                _run("iptables", "-t", table, "-F", rule.split()[1], check=False)
                _run("iptables", "-t", table, "-X", rule.split()[1], check=False)
    for controller in Path("/sys/fs/cgroup").iterdir():  # the kubelet's pod cgroups, deepest first
        kubepods = controller / "kubepods"
        if kubepods.is_dir() and not kubepods.is_symlink():
            for d in sorted((p for p in kubepods.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [kubepods]:
                try:
                    d.rmdir()
                except OSError:
                    pass
    Path("/proc/sys/net/ipv4/ip_forward").write_text(ip_forward)


def _signal(pid: int, sig: int) -> None:
    """To the process group a spawned child leads, else to the process."""
    try:
        os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
    except ProcessLookupError:
        pass


def leftovers(work: Path) -> list[str]:
    """What a node in `work` left behind after teardown: [] when it is clean."""
    found = [f"mount {line.split()[1]}" for line in Path("/proc/self/mounts").read_text().splitlines()
             if line.split()[1].startswith(str(work) + "/")]
    found += [f"process {pid} ({name})" for pid, name in _alive(work)]
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    for table in ("filter", "nat"):
        found += [f"iptables -t {table} {rule}" for rule in _run("iptables", "-t", table, "-S", check=False)
                  .stdout.splitlines() if any(c in rule for c in ("KUBE-", "CNI-", CHAIN))]
    return found


def _alive(work: Path) -> list[tuple[int, str]]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (d / "stat").read_text().split()[2]
            except OSError:
                continue
            if str(work) in cmd and state != "Z":
                out.append((int(d.name), cmd.split()[0]))
    return out


def _stop_pid(pid: int, timeout: float = 15) -> None:
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
        except (ProcessLookupError, FileNotFoundError):
            return
        time.sleep(0.2)
    _signal(pid, signal.SIGKILL)


if __name__ == "__main__":
    command, where = sys.argv[1], Path(sys.argv[2]).resolve()
    if command == "up":
        reason = why_not()
        if reason:
            sys.exit(reason)
        node = Node(where)
        print(node.kubeconfig)
    else:
        teardown(where)
