"""A small pipeline on both stores: a stage that fails leaves no artifact, says why, and the
next run resumes at that stage and runs to the end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from seft.spec import StoreConfig
from seft.storage import open_store

from conftest import ROOT, new_bucket

pytestmark = pytest.mark.e2e


def tiny_spec(tmp_path, callable_: str, store: dict):
    data = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    data.update(name="tiny", store=store)
    data["bootstrap"].update(preference_prompts=240, unlabelled_prompts=32)
    for training in (data["bootstrap"]["policy_training"], data["bootstrap"]["generator_training"],
                     data["reviser_training"], data["policy_training"]):
        training.update(max_steps=3, batch_size=16, per_device_batch_size=16)
    data["data"]["test_size"] = 8
    data["critics"][0]["callable"] = callable_
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(tmp_path, spec):
    return subprocess.run([sys.executable, "-m", "seft.cli", "run", str(spec)], cwd=tmp_path, text=True,
                          capture_output=True, timeout=900)


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    """(store settings for the spec, the same store opened here)."""
    if request.param == "file":
        cfg = {"uri": f"file://{tmp_path}/runs"}
    else:
        endpoint, _ = request.getfixturevalue("s3_server")
        request.getfixturevalue("s3_env")
        cfg = {"uri": f"s3://{new_bucket(endpoint)}/runs", "endpoint": endpoint, "secure": False}
    return cfg, open_store(StoreConfig(**cfg), "tiny")


def test_failed_stage_leaves_nothing_and_the_fixed_run_resumes_there(tmp_path, store):
    cfg, opened = store
    run_dir = tmp_path / "runs" / "tiny"
    failed = run(tmp_path, tiny_spec(tmp_path, "seft.tasks.sorting:no_such_function", cfg))
    assert failed.returncode == 1
    assert "service 'labeller' exited" in failed.stderr and "cannot import" in failed.stderr
    state = json.loads((run_dir / "run.json").read_text())["stages"]
    assert [state[s]["state"] for s in ("bootstrap", "prepare", "warmup", "label", "adapt")] == \
        ["done", "done", "done", "failed", "pending"]
    assert "labeller" in state["label"]["error"]
    assert opened.manifest("label") is None and [k for k, _ in opened.list("label")] == []
    assert not (run_dir / ".staging").exists() or not list((run_dir / ".staging").iterdir())

    fixed = run(tmp_path, tiny_spec(tmp_path, "seft.tasks.sorting:score", cfg))
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    assert "warmup: up to date, skipped" in fixed.stdout and "> label" in fixed.stdout
    report = json.loads((run_dir / "report.json").read_text())
    assert set(report["metrics"]["policy"]) == {"initial", "internal", "external"}
    assert report["metrics"]["reviser"]["adaptive"]["sort-rule"]["all"]["n"] == 8 * 7
