"""Shared fixtures: tiny real models (built from a config, trained for a few steps in-process),
a real S3 server. Shared helpers are in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # before gRPC loads: see seft/__init__.py

from helpers import S3_SECRET, free_port, make_base, sort_prompts  # noqa: E402

CRITICAL_GROUP = "e2e-2"  # the quickstart-baselines pipeline: most of `make test`'s time, on one worker
CORES = frozenset(os.sched_getaffinity(0))
CRITICAL_CORE = min(CORES)
_session = {"critical": False, "ran_critical": False}


def _group(item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    return mark.args[0] if mark else None


def pytest_collection_modifyitems(items):
    """The e2e pipelines, then the node tier, then the rest. xdist hands out work in this order
    (make test): the worker done with its e2e group first runs the node tier, whose waits on pods
    leave the CPU half idle, while the other worker's pipeline runs; then both share the rest."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("node") else 2)


def pytest_collection_finish(session):
    _session["critical"] = any(_group(item) == CRITICAL_GROUP for item in session.items)


def pytest_runtest_setup(item):
    """Under xdist, CRITICAL_GROUP's pipeline, a chain of one-thread trainings on the suite's
    critical path, keeps a core to itself (README "Tests"): its worker runs on CRITICAL_CORE, and
    the other workers, from their first test, at the lowest priority on the other cores. Priority
    alone does not keep the core: torchrun's workers and the node tier's processes start sessions
    of their own, and the kernel's autogroups share the CPU between sessions whatever their nice
    (one-thread training steps beside them were 1.4-1.6x slower, 1.0x with the cores apart). Children
    inherit both. After the pipeline its worker takes up the rest on every core."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    critical = _group(item) == CRITICAL_GROUP
    if critical:
        os.sched_setaffinity(0, {CRITICAL_CORE})
        _session["ran_critical"] = True
        return
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    others = CORES - {CRITICAL_CORE}
    keep_apart = _session["critical"] and others and not _session["ran_critical"]
    os.sched_setaffinity(0, others if keep_apart else CORES)


@pytest.fixture
def every_core():
    """The test's process may run on every core the suite may use, not only its worker's share."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, CORES)
    yield
    os.sched_setaffinity(0, before)


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


# -- S3: a real S3 server (moto's server mode) on loopback ------------------------------------
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
