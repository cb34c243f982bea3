"""`seft run examples/quickstart.yaml` to the end: killed mid-stage and resumed, re-run with every
stage skipped, and the report's numbers (the acceptance of the walking skeleton)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seft.storage import sha256_file

from conftest import ROOT

pytestmark = pytest.mark.e2e
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
EARLIER = ("bootstrap", "prepare", "warmup", "label")
ALL = EARLIER + ("adapt", "internal", "external", "evaluate")


def seft_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "seft.cli", *args]


def seft(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(seft_cmd(*args), cwd=cwd, text=True, capture_output=True, timeout=1800)


def artifact_hashes(run_dir: Path, stage: str) -> dict[str, str]:
    root = run_dir / stage
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def stage_state(run_dir: Path, stage: str) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text())["stages"][stage]["state"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def our_processes(marker: str) -> list[str]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd:
            out.append(cmd)
    return out


def test_quickstart_kill_resume_skip_and_report(tmp_path):
    run_dir = tmp_path / "runs" / "quickstart"
    run_args = ("run", str(QUICKSTART), "--set", f"store=file://{tmp_path}/runs")

    # 1. SIGKILL the run while the adapt stage is training.
    with (tmp_path / "first.log").open("w") as log:
        proc = subprocess.Popen(seft_cmd(*run_args), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, text=True)
        deadline = time.monotonic() + 1200
        while stage_state(run_dir, "adapt") != "running":
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.5)
        time.sleep(8)  # well inside the training
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {stage: artifact_hashes(run_dir, stage) for stage in EARLIER}
    assert all(before.values())
    assert not (run_dir / "adapt").exists()  # nothing half-written is visible
    status = seft("status", str(run_dir), "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["stages"]["adapt"]["state"] == "interrupted"
    deadline = time.monotonic() + 60  # the executor's children die with it (PDEATHSIG)
    while our_processes(str(run_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not our_processes(str(run_dir))

    # 2. Resume: earlier stages are skipped, their artifacts keep their sha256; adapt runs again.
    second = seft(*run_args, cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    for stage in EARLIER:
        assert f"{stage}: up to date, skipped" in second.stdout
    assert "> adapt" in second.stdout
    assert {stage: artifact_hashes(run_dir, stage) for stage in EARLIER} == before

    # The report: what README command 1 prints, and the acceptance numbers.
    report = json.loads((run_dir / "report.json").read_text())
    metrics, headline = report["metrics"], report["summaries"]["evaluate"]["headline"]
    adaptive = metrics["reviser"]["adaptive"]["sort-rule"]
    assert [k for k in adaptive] == ["0", "1", "2", "3", "4", "5", "6", "all"]
    for rank in map(str, range(7)):
        s = adaptive[rank]
        assert s["n"] == 200 and sum(s["labels"].values()) == pytest.approx(1.0)
        assert s["improvement_rate"] is None or 0 <= s["improvement_rate"] <= 1
    assert headline["adaptive_benefit_rank_4_6"] > 0
    rewards = headline["policy_reward"]
    assert rewards["external"] > rewards["initial"], rewards
    for text in ("Revisers on held-out originals", "Policy: mean critic reward", "after internal", "after external"):
        assert text in second.stdout

    # 3. Re-running a finished run skips every stage and changes nothing.
    finished = {stage: artifact_hashes(run_dir, stage) for stage in ALL}
    third = seft(*run_args, cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert all(f"{stage}: up to date, skipped" in third.stdout for stage in ALL)
    assert "> " not in third.stdout.replace("up to date", "")
    assert {stage: artifact_hashes(run_dir, stage) for stage in ALL} == finished
    status = seft("status", "quickstart", cwd=tmp_path)  # a run name is looked up under ./runs
    assert status.returncode == 0 and status.stdout.count("done (skipped)") == len(ALL)
