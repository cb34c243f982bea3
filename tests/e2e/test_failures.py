"""A small pipeline on an S3 store in which a stage fails: the S3 server goes away while the warmup
stage trains (a loopback proxy in front of moto cuts every connection, see tests/faults.py), so
its checkpoint upload fails. The run says why and leaves no artifact; with the server back, the
next run resumes at that stage and runs to the end. (The same on a file:// store, with a bad
spec, is in test_baselines.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from seft.spec import StoreConfig
from seft.storage import open_store

from helpers import ROOT, S3_SECRET, new_bucket
from faults import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-1")]  # make test runs groups e2e-1 and e2e-2 side by side


def tiny_spec(tmp_path, store: dict):
    data = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    data.update(name="tiny", store=store)
    data["bootstrap"].update(preference_prompts=240, unlabelled_prompts=32)
    for training in (data["bootstrap"]["policy_training"], data["bootstrap"]["generator_training"],
                     data["reviser_training"], data["policy_training"]):
        training.update(max_steps=3, batch_size=16, per_device_batch_size=16)
    data["data"]["test_size"] = 8
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_s3_server_gone_during_a_stage_then_back(tmp_path, s3_server, s3_env):
    endpoint, port = s3_server
    proxy = TcpProxy(port)
    bucket = new_bucket(endpoint)
    cfg = {"uri": f"s3://{bucket}/runs", "endpoint": proxy.endpoint, "secure": False, "retries": 2}
    direct = open_store(StoreConfig(uri=f"s3://{bucket}/runs", endpoint=endpoint, secure=False), "tiny")
    run_dir, spec = tmp_path / "runs" / "tiny", tiny_spec(tmp_path, cfg)

    proc = subprocess.Popen([sys.executable, "-m", "seft.cli", "run", str(spec)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    train_log = run_dir / "logs" / "warmup-reviser-train.log"
    deadline = time.monotonic() + 600
    while not train_log.exists():  # warmup has read its inputs and is training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proxy.cut()  # the store is gone before warmup publishes its checkpoint
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    assert proxy.endpoint in err and f"s3://{bucket}/runs/tiny/warmup/" in err and "unreachable" in err
    state = json.loads((run_dir / "run.json").read_text())["stages"]
    assert [state[s]["state"] for s in ("bootstrap", "prepare", "warmup")] == ["done", "done", "failed"]
    assert direct.manifest("warmup") is None  # nothing visible
    assert direct.manifest("prepare") is not None
    assert S3_SECRET not in out + err

    proxy.restore()
    fixed = subprocess.run([sys.executable, "-m", "seft.cli", "run", str(spec)], cwd=tmp_path, text=True,
                           capture_output=True, timeout=900)
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    assert "prepare: up to date, skipped" in fixed.stdout and "> warmup" in fixed.stdout
    report = json.loads((run_dir / "report.json").read_text())
    assert {"initial", "internal", "external"} <= set(report["metrics"]["policy"])
    assert report["metrics"]["reviser"]["adaptive"]["spell-rule"]["all"]["n"] == 8 * 7
    assert S3_SECRET not in fixed.stdout + fixed.stderr
    assert direct.manifest("evaluate") is not None
