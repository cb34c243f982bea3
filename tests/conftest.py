"""Shared fixtures: tiny real models (built from a config, trained for a few steps in-process)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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


@pytest.fixture(scope="session")
def base_model(tmp_path_factory) -> Path:
    return make_base(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="session")
def no_revise_reviser(tmp_path_factory, base_model) -> Path:
    """A real tiny reviser trained to answer [No Revise] to everything."""
    from seft.chat import reviser_prompt
    from seft.tinymodel import quick_sft

    examples = [(reviser_prompt(p, " ".join(map(str, nums))), "[No Revise]") for p, nums in sort_prompts(64)]
    return quick_sft(base_model, examples, tmp_path_factory.mktemp("reviser-no") / "model", steps=40)


@pytest.fixture(scope="session")
def major_reviser(tmp_path_factory, base_model) -> Path:
    """A real tiny reviser trained to answer [Major Revise] followed by the fixed text '1 2 3'."""
    from seft.chat import reviser_prompt
    from seft.tinymodel import quick_sft

    examples = [(reviser_prompt(p, " ".join(map(str, nums))), "[Major Revise] 1 2 3") for p, nums in sort_prompts(64)]
    return quick_sft(base_model, examples, tmp_path_factory.mktemp("reviser-major") / "model", steps=150)


@pytest.fixture(scope="session")
def endless_model(tmp_path_factory, base_model) -> Path:
    """The base model with EOS suppressed in its generation config: it always generates exactly
    max_new_tokens, so a test can tell a stopped generation from a finished one."""
    import shutil

    from transformers import GenerationConfig

    out = tmp_path_factory.mktemp("endless") / "model"
    shutil.copytree(base_model, out)
    config = GenerationConfig.from_pretrained(out)
    config.suppress_tokens = [config.eos_token_id]
    config.save_pretrained(out)
    return out


class Served:
    """A `seft serve ...` subprocess on a free port: .proc, .endpoint; stderr goes to .log."""

    def __init__(self, tmp_path: Path, *args: str, timeout: float = 120):
        import subprocess
        import sys
        import time

        port_file = tmp_path / f"port-{os.urandom(4).hex()}"
        self.log = port_file.with_suffix(".log")
        self.proc = subprocess.Popen([sys.executable, "-m", "seft.cli", "serve", *args, "--port", "0",
                                      "--port-file", str(port_file)], stderr=self.log.open("w"))
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            assert self.proc.poll() is None, f"seft serve exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "seft serve did not come up"
            time.sleep(0.1)
        self.endpoint = f"127.0.0.1:{port_file.read_text()}"

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- S3: a real S3 server (moto's server mode) on loopback ------------------------------------
S3_SECRET = "seft-test-secret-" + os.urandom(6).hex()  # tests grep logs for it


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """(endpoint, port) of a moto S3 server in this process."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}", port
    server.stop()


@pytest.fixture
def s3_env(monkeypatch, tmp_path):
    """Credentials in the environment (never in a spec) and a fresh node cache."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "seft-test-access")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("SEFT_CACHE_DIR", str(tmp_path / "node-cache"))
    return tmp_path / "node-cache"


def new_bucket(endpoint: str) -> str:
    from minio import Minio

    name = f"seft-{os.urandom(5).hex()}"
    Minio(endpoint, access_key="seft-test-access", secret_key=S3_SECRET, secure=False).make_bucket(name)
    return name
