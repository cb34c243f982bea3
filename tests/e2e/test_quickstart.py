"""`seft run examples/quickstart.yaml` to the end with its store on a real S3 server (moto) on
loopback: killed mid-stage and resumed, re-run with every stage skipped, and the report's
numbers. Its bootstrap and reviser trainings take a sixth to a tenth of the example's steps, on a
quarter of its unlabelled prompts (SMALL), so the test takes about 9 minutes in `make test`.
(The file:// store runs a whole pipeline, with the paper's baselines, in test_baselines.py.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seft.spec import StoreConfig
from seft.storage import open_store

from helpers import ROOT, S3_SECRET, has_ink, new_bucket, pids_holding, pids_with

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-1")]  # make test runs groups e2e-1 and e2e-2 side by side
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
EARLIER = ("bootstrap", "prepare", "warmup", "label")
ALL = EARLIER + ("adapt", "internal", "external", "evaluate")
SMALL = ("bootstrap.unlabelled_prompts=1000", "bootstrap.policy_training.max_steps=100",
         "bootstrap.generator_training.max_steps=200", "reviser_training.max_steps=120",
         "reviser_training.save_steps=40", "policy_training.max_steps=80")


def seft_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "seft.cli", *args]


def seft(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(seft_cmd(*args), cwd=cwd, text=True, capture_output=True, timeout=1800)


def artifact_hashes(store, stage: str) -> dict[str, str]:
    """sha256 of every file of a published artifact, read from the store (and verified)."""
    manifest = store.manifest(stage)
    store.fetch(stage)  # downloads and checks every file against these hashes
    return {rel: entry["sha256"] for rel, entry in manifest["files"].items()}


def stage_state(run_dir: Path, stage: str) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text())["stages"][stage]["state"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def our_processes(run_dir: Path) -> list[int]:
    """Pids that name `run_dir` in their command line (torchrun) or hold a file under it open (a
    forked service or training)."""
    return sorted(set(pids_with(str(run_dir)) + pids_holding(run_dir)))


def test_quickstart_on_s3_kill_resume_skip_and_report(tmp_path, s3_server, s3_env):
    endpoint, _ = s3_server
    bucket = new_bucket(endpoint)
    run_dir = tmp_path / "runs" / "quickstart"  # the local workdir: run.json, logs, report.json
    run_args = ("run", str(QUICKSTART), "--workdir", str(tmp_path / "runs"), "--set", f"store.uri=s3://{bucket}/team",
                "--set", f"store.endpoint={endpoint}", "--set", "store.secure=false")
    run_args += tuple(x for kv in SMALL for x in ("--set", kv))
    store = open_store(StoreConfig(uri=f"s3://{bucket}/team", endpoint=endpoint, secure=False), "quickstart")

    # 1. SIGKILL the run while the adapt stage is training: once its training has logged a loss
    # (step 50 of 120, after its checkpoint at step 40), whatever the machine's speed.
    train_log = run_dir / "logs" / "adapt-reviser-train.log"
    with (tmp_path / "first.log").open("w") as log:
        proc = subprocess.Popen(seft_cmd(*run_args), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, text=True)
        deadline = time.monotonic() + 1200
        while not (stage_state(run_dir, "adapt") == "running" and train_log.exists()
                   and "'loss'" in train_log.read_text()):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert our_processes(run_dir)  # the training, at least: what must be gone after the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {stage: artifact_hashes(store, stage) for stage in EARLIER}
    assert all(before.values())
    assert store.manifest("adapt") is None  # nothing half-written is visible
    status = seft("status", str(run_dir), "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["stages"]["adapt"]["state"] == "interrupted"
    deadline = time.monotonic() + 60  # the executor's children die with it (a pidfd watch, PDEATHSIG)
    while our_processes(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not our_processes(run_dir)

    # 2. Resume: earlier stages are skipped, their artifacts keep their sha256; adapt runs again.
    second = seft(*run_args, cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    for stage in EARLIER:
        assert f"{stage}: up to date, skipped" in second.stdout
    assert "> adapt" in second.stdout
    assert {stage: artifact_hashes(store, stage) for stage in EARLIER} == before
    assert "resuming from" in train_log.read_text() and "checkpoint-40" in train_log.read_text()  # not step 0

    # The report: what README command 1 prints, and the acceptance numbers.
    report = json.loads((run_dir / "report.json").read_text())
    metrics, headline = report["metrics"], report["summaries"]["evaluate"]["headline"]
    adaptive = metrics["reviser"]["adaptive"]["spell-rule"]
    assert [k for k in adaptive] == ["0", "1", "2", "3", "4", "5", "6", "all"]
    for rank in map(str, range(7)):
        s = adaptive[rank]
        assert s["n"] == 200 and sum(s["labels"].values()) == pytest.approx(1.0)
        assert s["improvement_rate"] is None or 0 <= s["improvement_rate"] <= 1
    assert headline["adaptive_benefit_rank_4_6"] > 0
    pair = metrics["reviser_pairwise"]["spell-rule"]["preliminary vs adaptive"]
    assert pair["n"] == 200 * 7 and pair["wins"] + pair["ties"] + pair["losses"] == pair["n"]
    rewards = headline["policy_reward"]
    assert rewards["external"] > rewards["initial"], rewards
    for text in ("Revisers on held-out originals", "Policy on held-out prompts", "after internal", "after external"):
        assert text in second.stdout
    assert f"report: {run_dir / 'report.md'}" in second.stdout
    plots = {p.name for p in (run_dir / "plots").glob("*.png")}
    assert plots == {"reviser_ranks_spell-rule.png", "labels_spell-rule.png", "rewards_spell-rule.png", "policy.png",
                     "losses.png"}
    assert has_ink(run_dir / "plots" / "losses.png")  # every training's loss curve

    # 3. Re-running a finished run skips every stage and changes nothing.
    finished = {stage: artifact_hashes(store, stage) for stage in ALL}
    third = seft(*run_args, cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert all(f"{stage}: up to date, skipped" in third.stdout for stage in ALL)
    assert "> " not in third.stdout.replace("up to date", "")
    assert {stage: artifact_hashes(store, stage) for stage in ALL} == finished
    status = seft("status", "quickstart", cwd=tmp_path)  # a run name is looked up under ./runs
    assert status.returncode == 0 and status.stdout.count("done (skipped)") == len(ALL)

    # The report is in the bucket too.
    store.download("report.json", tmp_path / "report-from-s3.json")
    assert json.loads((tmp_path / "report-from-s3.json").read_text())["metrics"] == metrics

    # No credential reached any output or log.
    outputs = [(tmp_path / "first.log").read_text(), second.stdout, second.stderr, third.stdout, third.stderr]
    outputs += [log.read_text(errors="replace") for log in (run_dir / "logs").iterdir()]
    assert not any(S3_SECRET in text for text in outputs)
