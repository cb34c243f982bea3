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


def build_tokenizer(words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # The words of the prompt formats themselves, so templates never hit <unk>.
    format_text = reviser_prompt([{"role": "user", "content": "x"}, {"role": "assistant", "content": "x"},
                                  {"role": "system", "content": "x"}], "x")[0]["content"]
    pre = pre_tokenizers.Whitespace()
    vocab_words = sorted({w for w, _ in pre.pre_tokenize_str(format_text + " " + " ".join(words))})
    tokens = SPECIALS + [label.value for label in Label] + vocab_words
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.add_special_tokens(SPECIALS + [label.value for label in Label])
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
