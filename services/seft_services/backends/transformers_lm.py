"""In-process `transformers` backend for generators and revisers (CPU or one GPU)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch

from seft.chat import prompt_ids, reviser_prompt
from seft.labelling import Label
from seft_services.backends import Completion, Revision
from seft_services.protocol import SamplingParams


class _StopRows:
    """A StoppingCriteria from per-row flags: rows whose call was cancelled stop generating."""

    def __init__(self, stop):
        self.stop = stop

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.tensor(self.stop(), dtype=torch.bool, device=input_ids.device)


def _rows(stop, rows: list[int]):
    """The stop flags of some rows only (those still generating)."""
    if stop is None:
        return None
    keep = set(rows)
    return lambda: [flag for i, flag in enumerate(stop()) if i in keep]


@dataclass
class Prefill:
    """A left-padded batch after one forward pass, with its KV cache: generation continues from it
    without computing the prompts again."""

    ids: torch.Tensor
    mask: torch.Tensor
    cache: object  # transformers' DynamicCache

    def continue_with(self, rows: list[int], tokens: list[int]) -> Prefill:
        """Rows `rows` only (in that order), each with one more token to feed (`tokens[i]`). The
        cache is changed in place: this prefill is spent."""
        index = torch.tensor(rows, device=self.ids.device)
        self.cache.batch_select_indices(index)
        extra = torch.tensor(tokens, device=self.ids.device).unsqueeze(-1)
        return Prefill(torch.cat([self.ids[index], extra], -1),
                       torch.cat([self.mask[index], torch.ones_like(extra)], -1), self.cache)


class CausalLM:
    """A causal LM and its tokenizer; calls are serialised (one batch at a time)."""

    def __init__(self, model_dir: str, device: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).to(self.device).eval()
        self.lock = threading.Lock()

    def encode(self, messages: list[dict]) -> list[int]:
        return prompt_ids(self.tokenizer, messages)

    def _left_pad(self, seqs: list[list[int]]):
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        return ids, mask

    @torch.inference_mode()
    def generate(self, seqs: list[list[int]] | Prefill, params: SamplingParams, stop=None) -> list[list[int]]:
        """New token ids for each prompt (up to, not including, EOS); `seqs` may be a Prefill, whose
        cached tokens are not computed again. stop: per-row flags polled at every step; a flagged
        row stops (its call was cancelled)."""
        from transformers import StoppingCriteriaList

        kwargs = {"do_sample": params.temperature > 0}
        if isinstance(seqs, Prefill):
            ids, mask = seqs.ids, seqs.mask
            kwargs["cache"] = seqs.cache
        else:
            ids, mask = self._left_pad(seqs)
        if stop is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopRows(stop)])
        if kwargs["do_sample"]:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=params.max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id,
                                  eos_token_id=self.tokenizer.eos_token_id, **kwargs)
        results = []
        ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}  # a stopped row is padded
        for row in out[:, ids.shape[1]:].tolist():
            results.append(next((row[:i] for i, t in enumerate(row) if t in ends), row))
        return results

    @torch.inference_mode()
    def prefill(self, seqs: list[list[int]]) -> tuple[torch.Tensor, Prefill]:
        """log p(next token | seq) over the vocabulary for each seq, from one forward pass, and the
        batch's KV cache to generate from."""
        from transformers import DynamicCache

        ids, mask = self._left_pad(seqs)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                            use_cache=True, logits_to_keep=1).logits[:, -1]
        if cache.get_seq_length() != ids.shape[1]:  # a transformers that ignores `cache=`: never generate from it
            raise RuntimeError(f"{type(self.model).__name__} did not fill the KV cache it was given "
                               "(transformers too old for `cache=`?)")
        return torch.log_softmax(logits.float(), dim=-1), Prefill(ids, mask, cache)

    @torch.inference_mode()
    def continuation_logprobs(self, seqs: list[list[int]], continuation: list[int]) -> torch.Tensor:
        """log p(continuation | seq) for each seq, in one forward pass."""
        ids, mask = self._left_pad([s + continuation for s in seqs])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        n = len(continuation)
        logp = torch.log_softmax(logits[:, -n - 1:-1].float(), dim=-1)
        target = torch.tensor(continuation, device=self.device).expand(len(seqs), n)
        return logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


class TransformersGenerator:
    def __init__(self, lm: CausalLM):
        self.lm = lm

    def generate(self, prompts: list[list[dict]], params: SamplingParams, stop=None) -> list[Completion]:
        seqs = [self.lm.encode(p) for p in prompts]
        with self.lm.lock:
            outs = self.lm.generate(seqs, params, stop)
        return [Completion(self.lm.decode(o), len(s), len(o)) for s, o in zip(seqs, outs)]


class TransformersReviser:
    """label_first=True: the adaptive reviser. It picks the most likely label (or samples one,
    at temperature > 0) by scoring the three label strings (one forward pass when each label is
    a single token, as when they are added to the tokenizer as special tokens): a [No Revise]
    costs exactly the label's tokens and returns the original verbatim. Otherwise it generates
    the revision after the label, continuing from that pass's KV cache (the prompt is not
    computed twice). label_first=False: a preliminary reviser that always revises."""

    def __init__(self, lm: CausalLM, label_first: bool = True):
        self.lm = lm
        self.label_first = label_first
        self.label_ids = {label: lm.tokenizer(label.value, add_special_tokens=False)["input_ids"]
                          for label in Label}

    def encode(self, items: list[tuple[list[dict], str]]) -> list[list[int]]:
        """The reviser's input ids for each (prompt, original)."""
        return [self.lm.encode(reviser_prompt(prompt, original)) for prompt, original in items]

    def choose_labels(self, seqs: list[list[int]], params: SamplingParams,
                      force_revise: bool = False) -> tuple[list[Label], Prefill | None]:
        """The labels, and where the labels are single tokens, the prompts' prefill (one pass) for
        the revisions to continue from."""
        labels = [lb for lb in Label if not (force_revise and lb is Label.NO)]
        prefill = None
        if all(len(self.label_ids[lb]) == 1 for lb in labels):
            logp, prefill = self.lm.prefill(seqs)
            scores = torch.stack([logp[:, self.label_ids[lb][0]] for lb in labels], -1)
        else:
            scores = torch.stack([self.lm.continuation_logprobs(seqs, self.label_ids[lb]) for lb in labels], -1)
        if params.temperature > 0:
            picks = torch.multinomial(torch.softmax(scores / params.temperature, -1), 1).squeeze(-1)
        else:
            picks = scores.argmax(-1)
        return [labels[i] for i in picks.tolist()], prefill

    def revise(self, items: list[tuple[list[dict], str]], params: SamplingParams,
               force_revise: bool = False, stop=None) -> list[Revision]:
        seqs = self.encode(items)
        with self.lm.lock:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            labels, prefill = (self.choose_labels(seqs, params, force_revise) if self.label_first
                               else ([None] * len(seqs), None))
            todo = [i for i, lb in enumerate(labels) if lb is not Label.NO]
            outs = {}
            if todo:
                inputs = (prefill.continue_with(todo, [self.label_ids[labels[i]][0] for i in todo]) if prefill
                          else [seqs[i] + (self.label_ids[labels[i]] if labels[i] else []) for i in todo])
                outs = dict(zip(todo, self.lm.generate(inputs, params, _rows(stop, todo))))
        results = []
        for i, ((_, original), label) in enumerate(zip(items, labels)):
            label_cost = len(self.label_ids[label]) if label else 0
            if i in outs:
                results.append(Revision(label, self.lm.decode(outs[i]), True, len(seqs[i]),
                                        label_cost + len(outs[i])))
            else:
                results.append(Revision(label, original, False, len(seqs[i]), label_cost))
        return results
