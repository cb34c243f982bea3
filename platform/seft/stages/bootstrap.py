"""bootstrap: make the quickstart's inputs from nothing (no downloads).

A task with graded rewards (`task`: sort or spell; preference prompts with 7 ranked responses,
unlabelled prompts), a word-level tokenizer, a tiny Llama, and two SFT models trained in parallel
on a separate pool of prompts: the weak initial policy (worse ranks) and the stronger external
generator (better ranks), which is also the reviser's base model."""

from __future__ import annotations

import random

from seft import refinement
from seft.records import PreferenceRecord, PromptRecord, SFTExample, write_jsonl
from seft.stages import Ref, Stage, TrainSpec
from seft.tasks import FEEDBACK_WORDS, sorting, spelling
from seft.tinymodel import build_model, build_tokenizer

TASKS = {"sort": sorting, "spell": spelling}


def stage(spec) -> Stage:
    base, cfg = Ref("bootstrap", "base"), spec.bootstrap
    return Stage("bootstrap", run, reads=("bootstrap", "refines"), trainings={
        "policy": TrainSpec(base, "sft_policy.jsonl", cfg.policy_training),
        "generator": TrainSpec(base, "sft_generator.jsonl", cfg.generator_training)})


def _sft(task, rng: random.Random, n: int, ranks: list[int]) -> list[SFTExample]:
    out = []
    for _ in range(n):
        prompt = task.make_prompt(rng)
        response = task.ranked_responses(prompt, rng)[rng.choice(ranks)]["content"]
        out.append(SFTExample(prompt=task.prompt_messages(prompt),
                              completion=[{"role": "assistant", "content": response}]))
    return out


def run(ctx) -> dict:
    cfg, out = ctx.spec.bootstrap, ctx.out
    task, rng = TASKS[cfg.task], random.Random(ctx.spec.seed)
    preference = []
    for i in range(cfg.preference_prompts):
        prompt = task.make_prompt(rng)
        preference.append(PreferenceRecord(id=f"pref-{i}", prompt=task.prompt_messages(prompt),
                                           responses=task.ranked_responses(prompt, rng)))
    prompts = [PromptRecord(id=f"prompt-{i}", prompt=task.prompt_messages(task.make_prompt(rng)))
               for i in range(cfg.unlabelled_prompts)]
    write_jsonl(out / "preference.jsonl", preference)
    write_jsonl(out / "prompts.jsonl", prompts)
    write_jsonl(out / "sft_policy.jsonl", _sft(task, rng, cfg.preference_prompts, cfg.policy_ranks))
    write_jsonl(out / "sft_generator.jsonl", _sft(task, rng, cfg.preference_prompts, cfg.generator_ranks))

    words = task.corpus_words() + (refinement.format_words() + FEEDBACK_WORDS if ctx.spec.refines else [])
    tokenizer = build_tokenizer(words)
    build_model(tokenizer, cfg.model, ctx.spec.seed, out / "base")
    return {"preference": len(preference), "prompts": len(prompts), "vocab": len(tokenizer)}
