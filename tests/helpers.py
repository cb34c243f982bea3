"""What the tests share besides fixtures (those are in conftest.py): paths, tiny real models,
a `seft serve` subprocess, the S3 test credentials."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# The CUDA path's checks run where torch sees a GPU (CI has none; each has a CPU twin that runs
# everywhere). On a GPU machine: `pytest -m integration -k cuda`.
needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")

def make_base(out: Path, seed: int = 0) -> Path:
    from seft.spec import TinyModel
    from seft.tasks import sorting
    from seft.tinymodel import build_model, build_tokenizer

    return build_model(build_tokenizer(sorting.corpus_words()), TinyModel(hidden_size=64, intermediate_size=128),
                       seed, out)


def sort_prompts(n: int, seed: int = 0) -> list[tuple[list[dict], list[int]]]:
    from seft.tasks import sorting

    rng = random.Random(seed)
    return [(sorting.prompt_messages(nums), nums) for nums in (sorting.make_prompt(rng) for _ in range(n))]


class Served:
    """A `seft serve ...` subprocess on `port` (0: a free one): .proc, .endpoint; stderr goes to .log."""

    def __init__(self, tmp_path: Path, *args: str, timeout: float = 120, port: int = 0):
        import subprocess
        import sys
        import time

        port_file = tmp_path / f"port-{os.urandom(4).hex()}"
        self.log = port_file.with_suffix(".log")
        self.proc = subprocess.Popen([sys.executable, "-m", "seft.cli", "serve", *args, "--port", str(port),
                                      "--port-file", str(port_file)], stderr=self.log.open("w"))
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            assert self.proc.poll() is None, f"seft serve exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "seft serve did not come up"
            time.sleep(0.1)
        self.endpoint = f"127.0.0.1:{port_file.read_text()}"

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code; a server still running after `timeout` fails the test
        with the end of its log."""
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"seft serve did not exit {timeout:.0f} s after SIGTERM; its log:\n"
                                 f"{self.log.read_text()[-3000:]}") from None

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- load on a reviser service ------------------------------------------------------------------
def revise_request(i: int):
    from seft.v1 import common_pb2, reviser_pb2

    return reviser_pb2.ReviseRequest(request_id=f"r{i}", items=[reviser_pb2.RevisionItem(
        prompt=[common_pb2.ChatMessage(role="user", content=f"Sort ascending : {i % 7} 3 1")],
        original=f"{i % 7} 3 1")], sampling=common_pb2.SamplingParams(max_new_tokens=8))


def hammer(endpoint: str, clients: int, until: threading.Event, outcomes: list,
           calls: int | None = None) -> list[threading.Thread]:
    """`clients` threads, each calling Revise back to back (no retries) until `until` is set, it
    made `calls` calls, or a call fails; each outcome is (start, end, status code name, revision
    or None)."""
    import grpc

    from seft.v1 import reviser_pb2_grpc

    def client(k: int) -> None:
        with grpc.insecure_channel(endpoint, options=[("grpc.enable_retries", 0)]) as ch:
            stub = reviser_pb2_grpc.ReviserStub(ch)
            i = k
            while not until.is_set() and (calls is None or i < k + calls * clients):
                start = time.monotonic()
                try:
                    [rev] = stub.Revise(revise_request(i), timeout=60).revisions
                    outcomes.append((start, time.monotonic(), "OK", rev))
                except grpc.RpcError as exc:
                    outcomes.append((start, time.monotonic(), exc.code().name, None))
                    return
                i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    return threads


S3_SECRET = "seft-test-secret-" + os.urandom(6).hex()  # tests grep logs for it


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_bucket(endpoint: str) -> str:
    from minio import Minio

    name = f"seft-{os.urandom(5).hex()}"
    Minio(endpoint, access_key="seft-test-access", secret_key=S3_SECRET, secure=False).make_bucket(name)
    return name


def has_ink(path: Path, min_size: tuple[int, int] = (300, 400)) -> bool:
    """A real PNG of at least min_size (height, width) pixels, neither blank nor all ink."""
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    ink = (pixels[..., :3] < 0.9).any(axis=-1).mean()  # share of pixels that are not (near) white
    return height >= min_size[0] and width >= min_size[1] and 0.02 < ink < 0.9 and pixels[..., :3].std() > 0.05


def pids_with(marker: str) -> list[int]:
    """Pids whose command line contains marker (a pod's processes too: the node is this machine)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                out.append(int(pid))
        except OSError:
            pass
    return out


def pids_holding(path: Path) -> list[int]:
    """Pids with `path` open, or a file under it (a forked service or training holds its log as
    stdout; its command line is the fork server's)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or not ours to read
            continue
        targets = (_fd_target(f"/proc/{pid}/fd/{fd}") for fd in fds)
        if any(t == str(path) or t.startswith(f"{path}/") for t in targets):
            out.append(int(pid))
    return out


def _fd_target(link: str) -> str:
    """Where an fd points; "" when it closed since its directory was listed (a server closes a
    client's socket as the client goes: one such fd must not hide the process)."""
    try:
        return os.readlink(link)
    except OSError:
        return ""


def kill_all(marker: str) -> None:
    """SIGKILL every process whose command line contains marker (torchrun and its workers, each
    in a session of its own)."""
    import signal

    for pid in pids_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
