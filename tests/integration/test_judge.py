"""The LLM-as-judge evaluator against an OpenAI-compatible chat server on loopback whose judge
answers from a script (a test double for the user's judge model: none runs here)."""

from __future__ import annotations

import json

import pytest

from seft.judge import Judge

from judge_server import judge_server

pytestmark = pytest.mark.integration

SCRIPT = {  # a word in the question -> what the judge says
    "capital": "Accurate and concise. Rating: [[9]]",
    "poem": "Creative, a little long. Rating: [[6.5]]",
    "sum": "The answer is wrong. I would give it a three.",   # no [[rating]]
    "joke": "Funny. [[12]]",                                   # out of range
    "explode": None,                                          # the server fails
}


def scripted(body: dict) -> str | None:
    question = body["messages"][-1]["content"]
    return next(v for k, v in SCRIPT.items() if k in question)


RECEIVED: list[dict] = []  # the requests the current test's judge received


@pytest.fixture
def judge_url():
    global RECEIVED
    with judge_server(scripted) as (url, RECEIVED):
        yield url


def test_judgements_are_rated_and_malformed_ones_counted_with_their_text(judge_url):
    items = [("What is the capital of France?", "Paris."), ("Write a poem about rain.", "Drip, drop."),
             ("What is the sum of 2 and 3?", "6"), ("Tell me a joke.", "Knock knock."),
             ("Please explode.", "No.")]
    report = Judge(judge_url, "my-judge", concurrency=3).grade(items)
    ratings = [j.rating for j in report.judgements]
    assert ratings == [9.0, 6.5, None, None, None]  # in the order of the items
    assert "no [[rating]]" in report.judgements[2].error and "three" in report.judgements[2].text
    assert "outside 1..10" in report.judgements[3].error and report.judgements[3].text == "Funny. [[12]]"
    assert judge_url in report.judgements[4].error and report.judgements[4].text == ""
    assert report.summary() == {"n": 5, "rated": 2, "mean_rating": pytest.approx(7.75), "malformed": 2,
                                "failed_calls": 1}
    sent = next(r for r in RECEIVED if "capital" in r["messages"][-1]["content"])
    assert sent["model"] == "my-judge" and sent["temperature"] == 0.0
    assert "Paris." in sent["messages"][-1]["content"] and sent["messages"][0]["role"] == "system"


def test_seft_judge_writes_every_row_with_its_rating_or_reason(judge_url, tmp_path):
    import subprocess
    import sys

    src, out = tmp_path / "answers.jsonl", tmp_path / "judged.jsonl"
    src.write_text(json.dumps({"id": "a", "prompt": "What is the capital of Italy?", "response": "Rome"}) + "\n" +
                   json.dumps({"id": "b", "prompt": [{"role": "user", "content": "Compute the sum 1+1"}],
                               "response": "3"}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "judge", "--endpoint", judge_url, "--model", "j",
                           "--input", str(src), "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["rating"]) for r in rows] == [("a", 9.0), ("b", None)]
    assert "no [[rating]]" in rows[1]["judge_error"] and rows[1]["judgement"]
    assert json.loads(proc.stdout) == {"n": 2, "rated": 1, "mean_rating": 9.0, "malformed": 1, "failed_calls": 0}


class StageContext:
    """What evaluate's judge_answers uses of a stage's context: the spec and progress bars."""

    def __init__(self, judge: dict):
        from contextlib import contextmanager

        from seft.spec import Evaluation

        self.spec = type("Spec", (), {"evaluation": Evaluation(judge=judge)})()
        self.progress = contextmanager(lambda description, total: iter([lambda n: None]))


def test_the_evaluate_stage_judges_each_policys_answers_and_refuses_a_dead_judge(judge_url):
    from seft.errors import SeftError
    from seft.stages.evaluate import judge_answers

    prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}]
               for q in ("What is the capital of Spain?", "What is the sum of 1 and 1?")]
    ctx = StageContext({"endpoint": judge_url, "model": "j", "concurrency": 2})
    reports = judge_answers(ctx, prompts, {"initial": ["Madrid", "3"], "external": ["Madrid", "2"]})
    assert {n: r.summary() for n, r in reports.items()} == {
        n: {"n": 2, "rated": 1, "mean_rating": 9.0, "malformed": 1, "failed_calls": 0} for n in ("initial", "external")}
    asked = [r["messages"][-1]["content"] for r in RECEIVED]
    assert all("Be brief" not in a for a in asked)  # the question is the last user turn
    assert sum("Madrid" in a and "capital of Spain" in a for a in asked) == 2
    dead = StageContext({"endpoint": judge_url, "model": "j"})
    with pytest.raises(SeftError, match="every call to .* failed"):
        judge_answers(dead, [[{"role": "user", "content": "Please explode."}]], {"initial": ["no"]})
