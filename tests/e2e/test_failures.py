"""A small pipeline, on each store, in which a stage fails: it says why, leaves no artifact, and
the next run resumes at that stage and runs to the end.

- file://: the labelling critic cannot be imported (a bad spec), then the spec is fixed; this
  pipeline has the paper's baselines (quickstart-baselines.yaml's `baselines:`) and an LLM judge
  (a double on loopback) in evaluate too, and its report is checked for them;
- s3://: the S3 server goes away while the warmup stage trains (a loopback proxy in front of
  moto cuts every connection, see tests/faults.py), so its checkpoint upload fails; then the
  server is back."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from seft.spec import StoreConfig
from seft.storage import open_store

from seft.tasks import sorting

from conftest import ROOT, S3_SECRET, new_bucket
from faults import TcpProxy
from judge_server import judge_server

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-2")]  # make test runs groups e2e-1 and e2e-2 side by side
SCORE = "seft.tasks.sorting:score"


def tiny_spec(tmp_path, store: dict, callable_: str = SCORE, baselines: bool = False, judge: str | None = None):
    example = "quickstart-baselines.yaml" if baselines else "quickstart.yaml"
    data = yaml.safe_load((ROOT / "examples" / example).read_text())
    data.update(name="tiny", store=store)
    data["bootstrap"].update(preference_prompts=240, unlabelled_prompts=32)
    trainings = [data["bootstrap"]["policy_training"], data["bootstrap"]["generator_training"],
                 data["reviser_training"], data["policy_training"]]
    trainings += list(data.get("baselines", {}).get("training", {}).values())
    for training in trainings:
        training.update(max_steps=3, batch_size=16, per_device_batch_size=16)
    if judge:
        data["evaluation"]["judge"] = {"endpoint": judge, "model": "sort-judge"}
    data["data"]["test_size"] = 8
    data["critics"][0]["callable"] = callable_
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def seft_run(tmp_path, spec, **kw):
    return subprocess.run([sys.executable, "-m", "seft.cli", "run", str(spec)], cwd=tmp_path, text=True,
                          capture_output=True, timeout=900, **kw)


def stages(run_dir):
    return json.loads((run_dir / "run.json").read_text())["stages"]


def check_resumed_to_the_end(tmp_path, spec, run_dir, skipped: str, rerun: str):
    fixed = seft_run(tmp_path, spec)
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    assert f"{skipped}: up to date, skipped" in fixed.stdout and f"> {rerun}" in fixed.stdout
    report = json.loads((run_dir / "report.json").read_text())
    assert {"initial", "internal", "external"} <= set(report["metrics"]["policy"])
    assert report["metrics"]["reviser"]["adaptive"]["sort-rule"]["all"]["n"] == 8 * 7
    return fixed


def sorting_judge(body: dict) -> str:
    """The judge double's verdict: 1 + 9 x the sorting rule's score, in MT-Bench's [[rating]] form."""
    text = body["messages"][-1]["content"]
    question = text.split("[Question]\n", 1)[1].split("\n\n[Assistant's answer]", 1)[0]
    answer = text.split("[Assistant's answer]\n", 1)[1].rsplit("\n[End of answer]", 1)[0]
    rating = 1 + round(9 * sorting.score([{"role": "user", "content": question}], answer))
    return f"Checked position by position. Rating: [[{rating}]]"


def check_baselines(run_dir, fixed, asked: list[dict]):
    """The paper's baselines were trained and evaluated beside SEFT on the same held-out set."""
    report = json.loads((run_dir / "report.json").read_text())
    metrics, headline = report["metrics"], report["summaries"]["evaluate"]["headline"]
    revisers = {name: by_critic["sort-rule"] for name, by_critic in metrics["reviser"].items()}
    assert list(revisers) == ["preliminary", "adaptive", "aligner", "label"]
    for by_rank in revisers.values():  # each reviser, each rank: its benefit and improvement rate
        assert [k for k in by_rank] == ["0", "1", "2", "3", "4", "5", "6", "all"]
        assert all(by_rank[r]["n"] == 8 and by_rank[r]["mean_benefit"] is not None for r in map(str, range(7)))
    assert not any(revisers["aligner"]["all"]["labels"].values())  # Aligner never labels
    rates = headline["improvement_rate_rank_0_1"]  # the paper's claim: pooled over ranks 0-1
    for name, by_rank in revisers.items():
        improved, revised = (sum(by_rank[r][k] for r in ("0", "1")) for k in ("improved", "revised"))
        assert rates[name] == (pytest.approx(improved / revised) if revised else None)
    assert "Improvement rate on rank 0-1 originals (sort-rule): adaptive" in fixed.stdout
    policies = metrics["policy"]  # the paper's Table 2, on the same held-out prompts
    assert list(policies) == ["initial", "sft_chosen", "dpo", "orpo", "sft_generator", "external_only",
                              "internal", "external"]
    assert all(0 <= policies[p]["sort-rule"] <= 1 and metrics["policy_vs_reference"][p]["sort-rule"]["n"] == 8
               for p in policies)
    judged = metrics["judge"]  # the LLM judge rated every policy's every answer
    assert list(judged) == list(policies) and len(asked) == 8 * len(policies)
    assert all(j["n"] == j["rated"] == 8 and j["malformed"] == j["failed_calls"] == 0 for j in judged.values())
    text = (run_dir / "report.md").read_text()
    assert "| judge rating |" in text and "aligner benefit | aligner improved | label benefit" in text
    for row in ("| initial |", "| SFT on chosen |", "| DPO |", "| ORPO |", "| SFT on the generator's answers |",
                "| external evolution only |", "| after internal |", "| after external (SEFT) |"):
        assert row in text


def test_file_store_failed_stage_then_fixed_spec(tmp_path):
    cfg = {"uri": f"file://{tmp_path}/runs"}
    store, run_dir = open_store(StoreConfig(**cfg), "tiny"), tmp_path / "runs" / "tiny"
    failed = seft_run(tmp_path, tiny_spec(tmp_path, cfg, "seft.tasks.sorting:no_such_function", baselines=True))
    assert failed.returncode == 1
    assert "service 'labeller' exited" in failed.stderr and "cannot import" in failed.stderr
    state = stages(run_dir)
    assert [state[s]["state"] for s in ("bootstrap", "prepare", "warmup", "label", "adapt")] == \
        ["done", "done", "done", "failed", "pending"]
    assert "labeller" in state["label"]["error"]
    assert store.manifest("label") is None and [k for k, _ in store.list("label")] == []
    assert not (run_dir / ".staging").exists() or not list((run_dir / ".staging").iterdir())
    with judge_server(sorting_judge) as (url, asked):
        spec = tiny_spec(tmp_path, cfg, baselines=True, judge=url)
        fixed = check_resumed_to_the_end(tmp_path, spec, run_dir, skipped="warmup", rerun="label")
    check_baselines(run_dir, fixed, asked)


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
    state = stages(run_dir)
    assert [state[s]["state"] for s in ("bootstrap", "prepare", "warmup")] == ["done", "done", "failed"]
    assert direct.manifest("warmup") is None  # nothing visible
    assert direct.manifest("prepare") is not None
    assert S3_SECRET not in out + err

    proxy.restore()
    fixed = check_resumed_to_the_end(tmp_path, spec, run_dir, skipped="prepare", rerun="warmup")
    assert S3_SECRET not in fixed.stdout + fixed.stderr
    assert direct.manifest("evaluate") is not None
