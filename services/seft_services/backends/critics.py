"""Critic backends: `rule` (a Python callable, for verifiable tasks) and `reward-model`
(an HF sequence-classification model; the reward is its first logit).

`score` takes (prompt, response) items, or (prompt, response, metadata) where a record carries
metadata: a rule critic is called `fn(prompt, response, **metadata)`, the way TRL passes a
dataset's extra columns to reward functions (e.g. a verifiable task's `answer`)."""

from __future__ import annotations

import math
import os
import threading

from seft.callables import load_callable


class RuleCritic:
    def __init__(self, path: str):
        try:
            self.fn = load_callable(path)
        except ValueError as exc:
            raise ValueError(f"rule critic {exc}") from None

    def score(self, items: list[tuple]) -> list[float]:
        rewards = [float(self.fn(prompt, response, **(meta[0] if meta and meta[0] else {})))
                   for prompt, response, *meta in items]
        bad = [r for r in rewards if not math.isfinite(r)]
        if bad:
            raise ValueError(f"rule critic returned a non-finite reward: {bad[0]}")
        return rewards


class RewardModelCritic:
    def __init__(self, model_dir: str, device: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(self.device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.lock = threading.Lock()

    def score(self, items: list[tuple]) -> list[float]:
        texts = [self.tokenizer.apply_chat_template(
            prompt + [{"role": "assistant", "content": response}], tokenize=False)
            for prompt, response, *_ in items]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                               truncation=True).to(self.device)
        with self.lock, self.torch.inference_mode():
            logits = self.model(**batch).logits
        return logits[:, 0].float().tolist()


def load_critic(backend: str, callable: str | None = None, model: str | None = None):
    if backend == "rule":
        if not callable:
            raise ValueError("the rule critic needs --callable package.module:function")
        return RuleCritic(callable)
    if backend == "reward-model":
        if not model:
            raise ValueError("the reward-model critic needs --model DIR")
        return RewardModelCritic(model)
    raise ValueError(f"unknown critic backend {backend!r}: expected rule or reward-model")
