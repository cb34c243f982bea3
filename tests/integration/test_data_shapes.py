"""The data people have, through the pipeline's first stages on tiny real models: prepare reads
each preference shape (ranked, scored, TRL pairwise) from JSONL, Parquet and save_to_disk; and from
prompts alone, the rank stage samples answers from real generator services, scores them with a
rule critic that reads each prompt's metadata, and ranks them, then warmup trains and label labels
(services as subprocesses, training under torchrun)."""

from __future__ import annotations

import io
import json
import random

import datasets
import pytest
from rich.console import Console

from seft.executors.local import run_pipeline
from seft.recipes import stages_for
from seft.records import read_jsonl
from seft.spec import PipelineSpec
from seft.tasks import answers, sorting
from seft.tinymodel import quick_sft

from helpers import sort_prompts

pytestmark = pytest.mark.integration


def _spec(tmp_path, model, critic: str = "seft.tasks.answers:words", **data) -> PipelineSpec:
    training = {"max_steps": 4, "batch_size": 8, "per_device_batch_size": 8, "learning_rate": 1e-3,
                "deepspeed": "none", "bf16": False, "logging_steps": 1}
    return PipelineSpec.model_validate({
        "name": "shapes", "store": f"file://{tmp_path / 'store'}",
        "models": {"policy": str(model), "reviser_base": str(model), "generator": str(model)},
        "critics": [{"name": "answer", "backend": "rule", "callable": critic}],
        "reviser_training": training, "generation": {"max_new_tokens": 12}, "revision": {"max_new_tokens": 12},
        "services": {"batch_size": 16}, **data})


def _rows(shape: str, n: int):
    rng = random.Random(1)
    for i, (prompt, nums) in enumerate(sort_prompts(n)):
        ranked = [r["content"] for r in sorting.ranked_responses(nums, rng)][:4]  # best first
        if shape == "ranked":
            yield {"id": f"q{i}", "prompt": prompt, "responses": [{"rank": k + 1, "content": t}  # Nectar's 1..
                                                                  for k, t in reversed(list(enumerate(ranked)))]}
        elif shape == "scored":
            yield {"prompt": prompt[0]["content"], "responses": [{"content": t, "score": 10 - k}
                                                                 for k, t in enumerate(ranked)]}
        else:
            yield {"prompt": prompt, "chosen": [{"role": "assistant", "content": ranked[0]}],
                   "rejected": [{"role": "assistant", "content": ranked[2]}], "source": "extra column"}


@pytest.mark.parametrize("shape, kind", [("ranked", "jsonl"), ("scored", "parquet"), ("pairwise", "disk")])
def test_prepare_reads_each_shape(tmp_path, base_model, shape, kind):
    """Ranked data runs on through warmup and label in the quickstart's e2e test, and scored data
    (the rank stage's) in the next test here; pairwise data does so here."""
    rows = list(_rows(shape, 12))
    path = tmp_path / {"jsonl": "pref.jsonl", "parquet": "pref.parquet", "disk": "pref"}[kind]
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        ds = datasets.Dataset.from_list(rows)
        ds.to_parquet(path) if kind == "parquet" else ds.save_to_disk(path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p[0]["content"]}) + "\n" for p, _ in sort_prompts(3, seed=9)))
    spec = _spec(tmp_path, base_model, critic="seft.tasks.sorting:score",  # these rows carry no answer
                 data={"preference": str(path), "prompts": str(prompts), "test_size": 2})
    upto = 3 if shape == "pairwise" else 1  # prepare, and for pairwise data warmup and label too
    report = run_pipeline(spec, stages_for(spec)[:upto], Console(file=io.StringIO()), workdir=tmp_path / "runs")
    out = tmp_path / "store" / "shapes" / "prepare"
    n_ranks = 2 if shape == "pairwise" else 4
    test = list(read_jsonl(out / "test.jsonl"))
    assert sorted({r["rank"] for r in test}) == list(range(n_ranks)) and len(test) == 2 * n_ranks
    best = {sorting.score(r["prompt"], r["original"]) for r in test if r["rank"] == 0}
    assert best == {1.0}  # rank 0 is the sorted answer in every shape
    train = list(read_jsonl(out / "warmup.jsonl")) + list(read_jsonl(out / "adaptive.jsonl"))
    assert len(train) == 10 and all(r["rank"] >= 1 and sorting.score(r["prompt"], r["target"]) == 1.0 for r in train)
    assert report["summaries"]["prepare"]["prompts"] == 3
    if shape == "pairwise":  # the original is always the rejected answer: rank 1
        labelled = list(read_jsonl(tmp_path / "store" / "shapes" / "label" / "labelled.jsonl"))
        assert len(labelled) == 7 and {r["rank"] for r in labelled} == {1}
        assert all(r["reward_original"] == sorting.score(r["prompt"], r["original"]) for r in labelled)


def test_each_training_prompt_gives_several_originals_when_asked(tmp_path, base_model):
    """data.originals_per_prompt: distinct ranks of one prompt, as many as it has at most."""
    path = tmp_path / "pref.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows("ranked", 12)))  # ranks 0..3
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "sort 3 1 2"}) + "\n")
    out = tmp_path / "store" / "shapes" / "prepare"
    for per_prompt, each in ((2, 2), (5, 3)):
        spec = _spec(tmp_path, base_model, critic="seft.tasks.sorting:score", data={
            "preference": str(path), "prompts": str(prompts), "test_size": 2, "originals_per_prompt": per_prompt})
        run_pipeline(spec, stages_for(spec)[:1], Console(file=io.StringIO()), workdir=tmp_path / f"runs{per_prompt}")
        train = list(read_jsonl(out / "warmup.jsonl")) + list(read_jsonl(out / "adaptive.jsonl"))
        by_prompt: dict[str, set] = {}
        for r in train:
            assert r["id"] == f"{r['id'].rsplit('-r', 1)[0]}-r{r['rank']}" and r["rank"] >= 1
            by_prompt.setdefault(r["id"].rsplit("-r", 1)[0], set()).add(r["rank"])
        assert len(by_prompt) == 10 and all(len(ranks) == each for ranks in by_prompt.values()), by_prompt
        assert len(train) == 10 * each


@pytest.fixture(scope="module")
def sorter(tmp_path_factory, base_model):
    """A tiny model that sorts about half right: sampled answers differ in quality."""
    rng = random.Random(0)
    examples = [(prompt, sorting.ranked_responses(nums, rng)[rng.choice([0, 1, 2, 3])]["content"])
                for prompt, nums in sort_prompts(200, seed=5)]
    return quick_sft(base_model, examples, tmp_path_factory.mktemp("sorter") / "model", steps=60)


def test_from_prompts_alone_rank_prepare_warmup_label(tmp_path, sorter):
    """No preference data: ranking builds it. The critic knows the answer only from the metadata
    (the prompts say nothing it could parse), so every score shows metadata reached it. The labels
    are made lopsided on purpose (alpha = beta = 1: only a perfect fix of a worthless answer is not
    [No Revise]), and the run warns."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p, "metadata": {"answer": " ".join(
        map(str, sorted(nums)))}}) + "\n" for i, (p, nums) in enumerate(sort_prompts(24, seed=3))))
    spec = _spec(tmp_path, sorter, data={"prompts": str(prompts), "test_size": 4},
                 ranking={"prompts": str(prompts), "generator": 3, "policy": 2},
                 labelling={"alpha": 1.0, "beta": 1.0, "p": 1.0})
    stages = stages_for(spec)
    assert [s.name for s in stages][:4] == ["rank", "prepare", "warmup", "label"]
    output = io.StringIO()
    report = run_pipeline(spec, stages[:4], Console(file=output, width=400), workdir=tmp_path / "runs")

    store = tmp_path / "store" / "shapes"
    ranked = list(read_jsonl(store / "rank" / "preference.jsonl"))
    assert len(ranked) == 24
    for row in ranked:
        scores = [a["score"] for a in row["responses"]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 5
        assert [a["source"] for a in row["responses"]].count("policy") == 2
        assert scores == [answers.words(row["prompt"], a["content"], row["metadata"]["answer"])
                          for a in row["responses"]]
    summary = report["summaries"]["rank"]
    assert summary["answers"] == 120 and 0 < summary["best_score_mean"] <= 1
    assert summary["all_tied_share"] < 1  # the answers differ: the data carries preferences

    labelled = list(read_jsonl(store / "label" / "labelled.jsonl"))
    assert len(labelled) == len(list(read_jsonl(store / "prepare" / "adaptive.jsonl"))) > 0
    for row in labelled:  # the labeller's critic scored with each record's metadata
        assert row["reward_original"] == answers.words(row["prompt"], row["original"], row["metadata"]["answer"])
        assert row["label"] in ("[Major Revise]", "[Minor Revise]", "[No Revise]")
    assert (store / "warmup" / "reviser" / "model.safetensors").is_file()

    label = report["summaries"]["label"]
    assert label["labels"]["no"] > 0.85 and set(label["labels_by_rank"]) == {"1", "2", "3", "4"}
    assert sum(label["labels_by_rank"]["1"].values()) == pytest.approx(1)
    [warning] = label["warnings"]
    assert "of the training labels are [No Revise] (alpha 1.0, beta 1.0, p 1.0)" in warning and "lower alpha" in warning
    assert f"warning: {warning}" in " ".join(output.getvalue().split())


def test_drop_tied_leaves_out_prompts_whose_answers_all_scored_the_same(tmp_path, sorter):
    """A third of the prompts carry an answer no response can match: all their answers score 0 and
    tie; of the others, those whose answers differ are kept."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p, "metadata": {
        "answer": "never" if i < 4 else " ".join(map(str, sorted(nums)))}}) + "\n"
        for i, (p, nums) in enumerate(sort_prompts(12, seed=4))))
    spec = _spec(tmp_path, sorter, data={"prompts": str(prompts), "test_size": 1},
                 ranking={"prompts": str(prompts), "generator": 4, "drop_tied": True,
                          "sampling": {"temperature": 0.7, "max_new_tokens": 12}})
    report = run_pipeline(spec, stages_for(spec)[:1], Console(file=io.StringIO()), workdir=tmp_path / "runs")
    kept = list(read_jsonl(tmp_path / "store" / "shapes" / "rank" / "preference.jsonl"))
    assert kept and not {r["id"] for r in kept} & {"p0", "p1", "p2", "p3"}
    assert all(len({a["score"] for a in r["responses"]}) > 1 for r in kept)
    summary = report["summaries"]["rank"]
    assert summary["prompts"] == 12 and summary["kept"] == len(kept)
    assert summary["all_tied_share"] == pytest.approx(1 - len(kept) / 12)
