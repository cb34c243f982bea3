"""The LLM-as-judge evaluator against an OpenAI-compatible chat server on loopback whose judge
answers from a script (a test double for the user's judge model: none runs here)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from seft.judge import Judge

pytestmark = pytest.mark.integration

SCRIPT = {  # a word in the question -> what the judge says
    "capital": "Accurate and concise. Rating: [[9]]",
    "poem": "Creative, a little long. Rating: [[6.5]]",
    "sum": "The answer is wrong. I would give it a three.",   # no [[rating]]
    "joke": "Funny. [[12]]",                                   # out of range
    "explode": None,                                          # the server fails
}


class ScriptedJudge(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ScriptedJudge.requests.append(body)
        question = body["messages"][-1]["content"]
        reply = next(v for k, v in SCRIPT.items() if k in question)
        if reply is None:
            data, status = json.dumps({"error": {"message": "judge overloaded"}}).encode(), 500
        else:
            data, status = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                       "choices": [{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": reply}}]}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


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
    sent = next(r for r in ScriptedJudge.requests if "capital" in r["messages"][-1]["content"])
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
