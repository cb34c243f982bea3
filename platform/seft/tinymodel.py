"""Tiny Llama-style models built from scratch: a word-level tokenizer trained with `tokenizers`
on the words the task and the prompt formats use, and a LlamaConfig. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

from seft.chat import reviser_prompt
from seft.labelling import Label
from seft.spec import TinyModel

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {{ eos_token }} "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(words: list[str], with_labels: bool = True):
    """with_labels=False: without the reviser's label tokens, like a real model's tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # The words of the prompt formats themselves, so templates never hit <unk>.
    format_text = reviser_prompt([{"role": "user", "content": "x"}, {"role": "assistant", "content": "x"},
                                  {"role": "system", "content": "x"}], "x")[0]["content"]
    pre = pre_tokenizers.Whitespace()
    vocab_words = sorted({w for w, _ in pre.pre_tokenize_str(format_text + " " + " ".join(words))})
    labels = [label.value for label in Label] if with_labels else []
    tokens = SPECIALS + labels + vocab_words
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.add_special_tokens(SPECIALS + labels)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, cfg: TinyModel, seed: int, out_dir: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in the run's output
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads, head_dim=cfg.head_dim,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)  # safetensors
    tokenizer.save_pretrained(out_dir)
    return out_dir


def quick_sft(model_dir: Path, examples: list[tuple[list[dict], str]], out: Path, steps: int = 80,
              lr: float = 1e-2, seed: int = 0) -> Path:
    """A few plain AdamW steps on (prompt, completion) pairs, in this process: gives tests and
    benchmarks a tiny model with a behaviour they can rely on (e.g. a reviser that keeps strong
    answers). Pipelines train with `seft train`."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seft.chat import encode_example

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    encoded = [encode_example(tok, p, c, 128) for p, c in examples]
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = rng.sample(encoded, min(16, len(encoded)))
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.tensor([e["input_ids"] + [tok.pad_token_id] * (width - len(e["input_ids"])) for e in batch])
        labels = torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in batch])
        loss = model(input_ids=ids, attention_mask=(ids != tok.pad_token_id).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
