"""The judge's rating parser and prompt loading, and the benchmark loaders, on files in the
formats FastChat (MT-Bench) and AlpacaEval publish."""

from __future__ import annotations

import json

import pytest

from seft.errors import SeftError
from seft.judge import DEFAULT_PROMPT, MalformedJudgement, load_judge_prompts, parse_rating
from seft.tasks.benchmarks import alpacaeval_instructions, mtbench_questions


@pytest.mark.parametrize("text, rating", [
    ("Helpful and correct. Rating: [[7]]", 7.0),
    ("[[ 8.5 ]]", 8.5),
    ("Rating: [[3]]. To repeat: [[3]]", 3.0),
    ("[[10]]", 10.0),
    ("[[1]]", 1.0),
])
def test_a_rating_is_read(text, rating):
    assert parse_rating(text) == rating


@pytest.mark.parametrize("text, reason", [
    ("I would give it a 7.", "no [[rating]]"),
    ("Rating: [7]", "no [[rating]]"),
    ("[[3]] at first, then [[8]]", "several different ratings"),
    ("[[0]]", "outside 1..10"),
    ("[[11]]", "outside 1..10"),
])
def test_a_malformed_judgement_says_why(text, reason):
    with pytest.raises(MalformedJudgement, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_rating(text)


def test_judge_prompts_load_from_fastchat_format(tmp_path):
    path = tmp_path / "judge_prompts.jsonl"
    lines = [
        {"name": "pair-x", "type": "pairwise", "system_prompt": "s", "prompt_template": "{question} {answer_a}"},
        {"name": "single-x", "type": "single", "system_prompt": "sys", "prompt_template": "Q: {question}\nA: {answer}"},
        {"name": "single-math-x", "type": "single", "system_prompt": "sys",
         "prompt_template": "{question} {ref_answer_1} {answer}"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    prompts = load_judge_prompts(path)
    assert list(prompts) == ["single-x"]  # pairwise and reference-guided prompts are not single-answer grading
    assert prompts["single-x"].messages("2+2?", "4") == [{"role": "system", "content": "sys"},
                                                         {"role": "user", "content": "Q: 2+2?\nA: 4"}]
    path.write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(SeftError, match="no single-answer judge prompts"):
        load_judge_prompts(path)


def test_the_default_prompt_asks_for_the_rating_format():
    [system, user] = DEFAULT_PROMPT.messages("What is 2+2?", "4")
    assert system["role"] == "system" and "[[rating]]" in user["content"]
    assert "What is 2+2?" in user["content"] and user["content"].index("What is 2+2?") < user["content"].index("4\n")


def test_mtbench_questions(tmp_path):
    path = tmp_path / "question.jsonl"
    path.write_text(json.dumps({"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]})
                    + "\n\n" + json.dumps({"question_id": 82, "category": "math", "turns": ["2+2?", "Why?"]}) + "\n")
    out = mtbench_questions(path)
    assert [q["id"] for q in out] == ["mt-bench-81", "mt-bench-82"]
    assert out[0]["prompt"] == [{"role": "user", "content": "Write a poem."}] and out[1]["turns"][1] == "Why?"
    path.write_text(json.dumps({"question_id": 1, "turns": []}) + "\n")
    with pytest.raises(SeftError, match=r"question.jsonl:1: needs 'question_id' and 'turns'"):
        mtbench_questions(path)


def test_alpacaeval_instructions(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps([{"instruction": "Name a colour.", "output": "Red", "dataset": "helpful_base"},
                                {"instruction": "Add 2 and 3.", "output": "5", "dataset": "koala"}]))
    out = alpacaeval_instructions(path)
    assert [r["id"] for r in out] == ["alpaca-eval-0", "alpaca-eval-1"]
    assert out[1]["prompt"] == [{"role": "user", "content": "Add 2 and 3."}] and out[0]["dataset"] == "helpful_base"
    path.write_text(json.dumps([{"instruction": " "}]))
    with pytest.raises(SeftError, match="record 0: 'instruction' must be a non-empty string"):
        alpacaeval_instructions(path)
