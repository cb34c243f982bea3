"""`openai` backend for generators and revisers: an OpenAI-compatible completions server, in a
pod vLLM's, running as a sidecar: vLLM, with its own pinned torch, stays out of this process.

Token ids go both ways, so serving matches the transformers backend exactly: prompts are rendered
and tokenized here with the model's own chat template (seft.chat), as in training, and the
generated ids (vLLM's `return_token_ids`) are decoded here, labels read from them. Each prompt is
one streamed request: vLLM batches concurrent requests itself, and a cancelled call closes its
streams (vLLM aborts a request whose client has gone). Needs vLLM >= 0.11 for `return_token_ids`
and `stop_token_ids`."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from seft.chat import prompt_ids, reviser_prompt
from seft.labelling import Label
from seft_services.backends import Cancelled, Completion, Revision
from seft_services.protocol import SamplingParams

log = logging.getLogger("seft.services")


class OpenAICompletions:
    """One model on an OpenAI-compatible server. `model` is its served name (default: the only
    model the server lists). The API key, if the server wants one, comes from OPENAI_API_KEY."""

    def __init__(self, base_url: str, tokenizer_dir: str, model: str | None = None, timeout: float = 600.0,
                 wait_s: float = 600.0, max_concurrency: int = 256):
        from openai import OpenAI
        from transformers import AutoTokenizer

        self.base_url = base_url
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                             timeout=timeout, max_retries=2)
        self.model = model or self._served_model(wait_s)
        self.pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="seft-openai")

    def _served_model(self, wait_s: float) -> str:
        """The server's only model, waiting up to wait_s for it to come up (vLLM loads for minutes)."""
        from openai import APIConnectionError

        deadline = time.monotonic() + wait_s
        while True:
            try:
                names = [m.id for m in self.client.models.list().data]
                break
            except APIConnectionError:
                if time.monotonic() > deadline:
                    raise ValueError(f"openai backend: no server answered at {self.base_url} "
                                     f"within {wait_s:.0f} s") from None
                log.info("waiting for the completions server at %s", self.base_url)
                time.sleep(2)
        if len(names) != 1:
            raise ValueError(f"openai backend: {self.base_url} serves {names}; name one with --served-model")
        return names[0]

    def encode(self, messages: list[dict]) -> list[int]:
        return prompt_ids(self.tokenizer, messages)

    def complete(self, ids: list[int], params: SamplingParams, cancelled, stop_token_ids=(),
                 logit_bias: dict[int, float] | None = None) -> list[int]:
        """The new token ids of one streamed completion, up to (not including) EOS; a stop token
        stays in. Raises Cancelled, closing the stream, once cancelled() is true."""
        from openai import OpenAIError

        kwargs = {"seed": params.seed} if params.seed is not None else {}
        if logit_bias:
            kwargs["logit_bias"] = {str(t): b for t, b in logit_bias.items()}
        out: list[int] = []
        try:
            stream = self.client.completions.create(
                model=self.model, prompt=ids, max_tokens=params.max_new_tokens, temperature=params.temperature,
                top_p=params.top_p, stream=True,
                extra_body={"stop_token_ids": list(stop_token_ids), "return_token_ids": True}, **kwargs)
            with stream:
                for chunk in stream:
                    if cancelled():
                        raise Cancelled()
                    for choice in chunk.choices:
                        delta = (choice.model_extra or {}).get("token_ids")
                        if delta is None:
                            raise RuntimeError("the server returned no token_ids: the openai backend needs "
                                               "vLLM >= 0.11 (return_token_ids)")
                        out.extend(delta)
        except OpenAIError as exc:
            raise RuntimeError(f"openai backend {self.base_url}: {exc}") from None
        if out and out[-1] == self.tokenizer.eos_token_id:
            out.pop()
        return out

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def map(self, fn, n: int, stop) -> list:
        """fn(i, cancelled_i) for i in range(n), concurrently; item i is cancelled once stop()[i]."""
        flags = (lambda i: lambda: stop()[i]) if stop else (lambda i: lambda: False)
        return list(self.pool.map(lambda i: fn(i, flags(i)), range(n)))


class OpenAIGenerator:
    batches_itself = True  # the server batches continuously: no dynamic batching in front of it

    def __init__(self, lm: OpenAICompletions):
        self.lm = lm

    def generate(self, prompts: list[list[dict]], params: SamplingParams, stop=None) -> list[Completion]:
        seqs = [self.lm.encode(p) for p in prompts]

        def one(i, cancelled):
            out = self.lm.complete(seqs[i], params, cancelled)
            return Completion(self.lm.decode(out), len(seqs[i]), len(out))
        return self.lm.map(one, len(seqs), stop)


class OpenAIReviser:
    """label_first=True: the adaptive reviser generates its label first, and the label
    `[No Revise]` is a stop token: the server stops right there and the original comes back
    verbatim. force_revise bans that token instead. Labels must be single tokens: the adapt
    stage's training adds them as special tokens to a tokenizer that lacks them.
    label_first=False: a reviser trained without labels."""

    batches_itself = True

    def __init__(self, lm: OpenAICompletions, label_first: bool = True):
        self.lm = lm
        self.label_first = label_first
        ids = {label: lm.tokenizer(label.value, add_special_tokens=False)["input_ids"] for label in Label}
        if label_first and any(len(v) != 1 for v in ids.values()):
            raise ValueError(f"openai backend: the labels must be single tokens of the tokenizer, got {ids}")
        self.label_of = {v[0]: label for label, v in ids.items()}
        self.no_revise_id = ids[Label.NO][0]

    def revise(self, items: list[tuple[list[dict], str]], params: SamplingParams, force_revise: bool = False,
               stop=None) -> list[Revision]:
        seqs = [self.lm.encode(reviser_prompt(prompt, original)) for prompt, original in items]
        kwargs = {}
        if self.label_first:
            kwargs = ({"logit_bias": {self.no_revise_id: -100}} if force_revise
                      else {"stop_token_ids": [self.no_revise_id]})

        def one(i, cancelled):
            out = self.lm.complete(seqs[i], params, cancelled, **kwargs)
            label = self.label_of.get(out[0]) if self.label_first and out else None
            if label is Label.NO:
                return Revision(label, items[i][1], False, len(seqs[i]), len(out))
            text = self.lm.decode(out[1:] if label else out)
            return Revision(label, text, True, len(seqs[i]), len(out))
        return self.lm.map(one, len(seqs), stop)
