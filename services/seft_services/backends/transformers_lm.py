"""In-process `transformers` backend for generators and revisers (CPU or one GPU)."""

from __future__ import annotations

import copy
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


def _shared_length(seqs: list[list[int]]) -> int:
    """How many leading tokens all seqs share."""
    n = 0
    for column in zip(*seqs):
        if any(t != column[0] for t in column):
            break
        n += 1
    return n


class CausalLM:
    """A causal LM and its tokenizer; calls are serialised (one batch at a time).

    Prefix caching: the KV cache of one token prefix that calls share (the chat template's opening,
    a task's instruction) is computed once, and a batch that starts with it computes only the rest
    of each prompt. The prefix is learnt from the traffic: what every row of a batch shares, or
    what a lone prompt shares with the one before, when the cached prefix does not serve it. vLLM
    keeps many prefixes (automatic prefix caching); one serves a service whose calls share a
    template."""

    MIN_PREFIX = 4  # tokens: a shorter shared prefix is not worth its cache

    def __init__(self, model_dir: str, device: str | None = None, prefix_caching: bool = True):
        from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
        from transformers.cache_utils import DynamicLayer

        if os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).to(self.device).eval()
        self.lock = threading.Lock()
        # only plain layers: a sliding window's cache cannot be cut back to a shorter prefix
        self.prefix_caching = prefix_caching and all(
            type(layer) is DynamicLayer for layer in DynamicCache(config=self.model.config).layers)
        self.prefix: list[int] = []   # the cached prefix's tokens
        self.prefix_cache = None      # its KV cache, one row
        self.last: list[int] = []     # the last call's first prompt

    def encode(self, messages: list[dict]) -> list[int]:
        return prompt_ids(self.tokenizer, messages)

    def _left_pad(self, seqs: list[list[int]]):
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        return ids, mask

    def _prefix_length(self, seqs: list[list[int]]) -> int:
        """How much of seqs' shared opening the prefix cache holds, learning a longer one first where
        this call shows it. Every row keeps at least one token to compute (its next token's logits)."""
        if not self.prefix_caching:
            return 0
        room = min(len(s) for s in seqs) - 1
        common = min(_shared_length(seqs), room)  # one scan of the batch: the cache's share follows from it
        held = min(common, _shared_length([self.prefix, seqs[0]]))
        if len(seqs) > 1:
            shared = common
        else:  # a lone prompt: learn from the one before, only when the cached prefix does not serve
            shared = min(_shared_length([seqs[0], self.last]), room) if self.last and held < self.MIN_PREFIX else 0
        self.last = seqs[0]
        if shared > held and shared >= self.MIN_PREFIX:
            from transformers import DynamicCache

            self.prefix, self.prefix_cache = seqs[0][:shared], DynamicCache(config=self.model.config)
            self.model(input_ids=torch.tensor([self.prefix], device=self.device), cache=self.prefix_cache,
                       use_cache=True, logits_to_keep=1)
            return shared
        return held if held >= self.MIN_PREFIX else 0

    def _batch(self, seqs: list[list[int]]):
        """ids and mask for seqs, left-padded, and where they start with the cached prefix, the batch's
        copy of its KV cache: then the prefix comes first and each row's padding after it (positions
        follow the mask, so each row is computed as it would be alone)."""
        m = self._prefix_length(seqs)
        if m == 0:
            return (*self._left_pad(seqs), None)
        ids, mask = self._left_pad([s[m:] for s in seqs])
        head = torch.tensor(self.prefix[:m], device=self.device).expand(len(seqs), m)
        cache = copy.deepcopy(self.prefix_cache)
        cache.crop(m - len(self.prefix))  # a negative count: the tokens past m go
        cache.batch_repeat_interleave(len(seqs))
        return torch.cat([head, ids], -1), torch.cat([torch.ones_like(head), mask], -1), cache

    @torch.inference_mode()
    def generate(self, seqs: list[list[int]] | Prefill, params: SamplingParams, stop=None) -> list[list[int]]:
        """New token ids for each prompt (up to, not including, EOS); `seqs` may be a Prefill, whose
        cached tokens are not computed again. stop: per-row flags polled at every step; a flagged
        row stops (its call was cancelled)."""
        from transformers import StoppingCriteriaList

        kwargs = {"do_sample": params.temperature > 0}
        if isinstance(seqs, Prefill):
            ids, mask, cache = seqs.ids, seqs.mask, seqs.cache
        else:
            ids, mask, cache = self._batch(seqs)
        if cache is not None:  # generation computes only the tokens the cache lacks
            kwargs["cache"] = cache
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

        ids, mask, cache = self._batch(seqs)
        cache = cache if cache is not None else DynamicCache(config=self.model.config)
        cached = cache.get_seq_length()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=ids[:, cached:], attention_mask=mask, position_ids=positions[:, cached:],
                            cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
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
