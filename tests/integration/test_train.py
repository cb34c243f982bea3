"""`seft train` under torchrun with 2 processes: plain DDP, ZeRO-2 and ZeRO-3 (gloo on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from seft.records import write_jsonl

from helpers import kill_all, needs_cuda, sort_prompts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sft.jsonl"
    write_jsonl(path, ({"prompt": p, "completion": [{"role": "assistant", "content": " ".join(map(str, sorted(n)))}]}
                       for p, n in sort_prompts(256)))
    return path


def job(tmp_path, base_model, data, **over) -> tuple:
    out = tmp_path / "out"
    cfg = {"model": str(base_model), "data": str(data), "output_dir": str(out), "learning_rate": 1e-2,
           "max_steps": 40, "batch_size": 16, "per_device_batch_size": 8, "max_length": 64, "warmup_ratio": 0.0,
           "bf16": False, "deepspeed": None, "nproc_per_node": 2, "logging_steps": 8, **over}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, out


@pytest.mark.parametrize("deepspeed", [None, "zero2", "zero3"])
def test_train_two_processes_loss_falls_and_model_reloads(tmp_path, base_model, sft_data, deepspeed):
    config, out = job(tmp_path, base_model, sft_data, deepspeed=deepspeed)  # nproc_per_node 2: the config's
    extensions = tmp_path / "torch_extensions"  # where torch would compile DeepSpeed's C++ ops
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not extensions.exists() or not any(extensions.iterdir())  # nothing compiled (see seft.train)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 40 and summary["device"] == "cpu"
    losses = summary["losses"]
    assert len(losses) == 5 and losses[-1] < 0.8 * losses[0], losses
    # an HF model directory of safetensors, no pickles
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]
    assert list((out / "logs").glob("events.out.tfevents.*"))  # the loss curve, for TensorBoard

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seft.chat import prompt_ids
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([prompt_ids(tok, [{"role": "user", "content": "Sort ascending : 9 4 7 1"}])])
    gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                         pad_token_id=tok.pad_token_id)
    new = gen[0, ids.shape[1]:]
    assert len(new) >= 1
    assert tok.decode(new, skip_special_tokens=True).split()[0].isdigit()  # it learned to answer with numbers


@needs_cuda
@pytest.mark.parametrize("deepspeed", [None, "zero2", "zero3"])
def test_train_on_one_cuda_gpu_in_bf16(tmp_path, base_model, sft_data, deepspeed):
    """The GPU twin of the test above: one process per GPU (NCCL), bf16 mixed precision."""
    config, out = job(tmp_path, base_model, sft_data, deepspeed=deepspeed, nproc_per_node=1, bf16=True)
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["device"] == "cuda" and summary["world_size"] == 1 and summary["steps"] == 40
    assert summary["losses"][-1] < 0.8 * summary["losses"][0], summary["losses"]
    assert not [p.name for p in out.iterdir() if p.name.endswith((".bin", ".pt", ".pkl"))]

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)  # the saved weights load anywhere, CPU included
    assert all(p.isfinite().all() for p in model.parameters())


def test_overrides_from_the_command_line(tmp_path, base_model, sft_data):
    config, out = job(tmp_path, base_model, sft_data, nproc_per_node=1, batch_size=8)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config),
                           "--set", "max_steps=3", "--set", "logging_steps=1"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 3
    assert not list(tmp.glob("seft-*"))  # a local training leaves no scratch directory behind


def test_bad_data_gets_a_clear_error(tmp_path, base_model):
    data = tmp_path / "bad.jsonl"
    write_jsonl(data, [{"prompt": [{"role": "user", "content": "x"}], "answer": "y"}])
    config, _ = job(tmp_path, base_model, data, nproc_per_node=1, batch_size=8)
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "records need 'completion'" in proc.stdout + proc.stderr


def test_the_worker_refuses_to_run_outside_torchrun(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    proc = subprocess.run([sys.executable, "-m", "seft.train", "--config", "x"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "runs under torchrun" in proc.stderr


def test_labels_become_single_tokens_of_a_tokenizer_that_lacked_them(tmp_path, sft_data):
    """A real model's tokenizer splits "[No Revise]"; the adaptive reviser's training adds the
    labels as special tokens and grows the embeddings, so serving can score and stop on them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seft.labelling import Label
    from seft.spec import TinyModel
    from seft.tasks import sorting
    from seft.tinymodel import build_model, build_tokenizer

    base = build_model(build_tokenizer(sorting.corpus_words(), with_labels=False),
                       TinyModel(hidden_size=64, intermediate_size=128), 0, tmp_path / "base")
    before = AutoTokenizer.from_pretrained(base)
    assert len(before(Label.NO.value, add_special_tokens=False)["input_ids"]) > 1
    labels = [label.value for label in Label]
    config, out = job(tmp_path, base, sft_data, nproc_per_node=1, batch_size=8, max_steps=2, add_tokens=labels)
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tok = AutoTokenizer.from_pretrained(out)
    ids = [tok(label, add_special_tokens=False)["input_ids"] for label in labels]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == 3
    assert len(tok) == len(before) + 3
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
    assert tok.decode(ids[0] + tok("1 2", add_special_tokens=False)["input_ids"], skip_special_tokens=True) == "1 2"


@pytest.fixture(scope="module")
def preference_data(tmp_path_factory):
    """Sorted over reversed: a preference the base model does not have."""
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    write_jsonl(path, ({"prompt": p, "chosen": [{"role": "assistant", "content": " ".join(map(str, sorted(n)))}],
                        "rejected": [{"role": "assistant", "content": " ".join(map(str, sorted(n, reverse=True)))}]}
                       for p, n in sort_prompts(256)))
    return path


def margin(model_dir, pairs: list[dict]) -> float:
    """Mean log p(chosen) - log p(rejected) of a model over pairs (its completion tokens only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seft.chat import encode_example
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)

    def logp(prompt, answer) -> float:
        enc = encode_example(tok, prompt, answer[0]["content"], 64)
        ids, labels = torch.tensor([enc["input_ids"]]), torch.tensor(enc["labels"][1:])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        picked = logits.log_softmax(-1).gather(1, labels.clamp(min=0)[:, None])[:, 0]
        return float(picked[labels != -100].sum())

    return sum(logp(p["prompt"], p["chosen"]) - logp(p["prompt"], p["rejected"]) for p in pairs) / len(pairs)


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_methods_prefer_chosen_after_training(tmp_path, base_model, preference_data, method):
    """TRL's DPO and ORPO under the same entrypoint: the chosen answers gain on the rejected."""
    from seft.records import read_jsonl

    config, out = job(tmp_path, base_model, preference_data, method=method, nproc_per_node=2, max_steps=20,
                      learning_rate=5e-3, logging_steps=5)
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config), "--nproc-per-node", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["method"] == method and summary["steps"] == 20 and summary["world_size"] == 2
    assert summary["losses"][-1] < summary["losses"][0], summary["losses"]
    assert not [p.name for p in out.iterdir() if p.name.endswith((".bin", ".pt", ".pkl"))]
    pairs = list(read_jsonl(preference_data))[:32]
    before, after = margin(base_model, pairs), margin(out, pairs)
    assert after > before + 0.5, (before, after)  # nats per pair; 20 steps gain 0.7 (ORPO) to 1+ (DPO)


def test_preference_data_without_pairs_gets_a_clear_error(tmp_path, base_model, sft_data):
    config, _ = job(tmp_path, base_model, sft_data, method="dpo", nproc_per_node=1, batch_size=8)
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "records need 'chosen' for method 'dpo'" in proc.stdout + proc.stderr


def test_a_failed_training_says_why_in_the_run_not_torchruns_summary(tmp_path, sft_data):
    """The executor's error names the worker's exception (here: a model directory that is not
    there), not torchrun's ChildFailedError; `seft status` shows the same text."""
    from rich.console import Console

    from seft.errors import SeftError
    from seft.executors.local import Context
    from seft.settings import Training
    from seft.specfile import load_spec
    from seft.stages import Ref, Stage, TrainSpec

    from helpers import ROOT

    training = Training(max_steps=1, batch_size=8, per_device_batch_size=8, bf16=False, deepspeed=None)
    stage = Stage("x", lambda ctx: {}, trainings={"m": TrainSpec(Ref(None, str(tmp_path / "no-model")), "d.jsonl",
                                                                training)})
    out = tmp_path / "out"
    out.mkdir()
    (out / "d.jsonl").write_text(sft_data.read_text())
    spec = load_spec(ROOT / "examples" / "quickstart.yaml")
    ctx = Context(spec, None, tmp_path, stage, out, Console(quiet=True))
    with pytest.raises(SeftError) as err:
        ctx.run_trainings()
    message = str(err.value)
    assert message.startswith("training 'm' failed (exit 1): ") and "no-model" in message.splitlines()[0]
    assert "Error" in message.splitlines()[0] and "ChildFailedError" not in message
    assert "last frames:" in message and "(log " in message


def torchrun(config, log):
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "seft.train", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("deepspeed", [None, "zero2"])
def test_a_killed_training_resumes_from_its_last_complete_checkpoint(tmp_path, base_model, sft_data, deepspeed):
    """Two processes SIGKILLed after their first checkpoint; started again they resume at the last
    complete one (not step 0), skip a newer one cut off mid-write, and end with the losses of a run
    never killed."""
    ckpts = tmp_path / "checkpoints"
    over = dict(deepspeed=deepspeed, max_steps=64, logging_steps=4, save_steps=16, checkpoint_dir=str(ckpts))
    config, out = job(tmp_path, base_model, sft_data, **over)
    with (tmp_path / "first.log").open("w") as log:
        proc = torchrun(config, log)
        deadline = time.monotonic() + 300
        while not (ckpts / "checkpoint-16" / "seft-complete.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.05)
        kill_all(str(config))
        proc.wait()
    assert not (out / "model.safetensors").exists()
    last = max(int(p.parent.name.split("-")[1]) for p in ckpts.glob("checkpoint-*/seft-complete.json"))
    assert last < 64  # killed before the end
    torn = ckpts / f"checkpoint-{last + 16}"  # as if killed while writing it: no marker
    torn.mkdir(exist_ok=True)
    (torn / "model.safetensors").write_bytes(b"half")
    with (tmp_path / "second.log").open("w") as log:
        assert torchrun(config, log).wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    second = (tmp_path / "second.log").read_text()
    assert f"resuming from {ckpts / f'checkpoint-{last}'}" in second
    assert second.count("'loss'") == (64 - last) // 4  # only the steps after the checkpoint ran again
    resumed = json.loads((out / "train_summary.json").read_text())
    assert resumed["steps"] == 64 and not ckpts.exists()  # done: its checkpoints are gone

    whole_dir = tmp_path / "whole"
    whole_dir.mkdir()
    whole, whole_out = job(whole_dir, base_model, sft_data, **{**over, "checkpoint_dir": str(whole_dir / "ck")})
    with (whole_dir / "run.log").open("w") as log:
        assert torchrun(whole, log).wait(timeout=600) == 0
    never_killed = json.loads((whole_out / "train_summary.json").read_text())["losses"]
    assert len(resumed["losses"]) == len(never_killed) == 16
    assert resumed["losses"] == pytest.approx(never_killed, rel=1e-4)  # the loss went on from the checkpoint


@pytest.fixture(scope="module")
def sorting_base(tmp_path_factory):
    """A tiny model taught to sort ascending (full fine-tuning, in-process): adapters on a random
    model cannot move its frozen, tiny-norm output embeddings far enough to fit anything."""
    from seft.spec import TinyModel
    from seft.tasks import sorting
    from seft.tinymodel import build_model, build_tokenizer, quick_sft

    tmp = tmp_path_factory.mktemp("sorting-base")
    random_init = build_model(build_tokenizer(sorting.corpus_words(), with_labels=False),
                              TinyModel(hidden_size=64, intermediate_size=128), 0, tmp / "random")
    return quick_sft(random_init, [(p, " ".join(map(str, sorted(n)))) for p, n in sort_prompts(128, seed=3)],
                     tmp / "base", steps=150)


@pytest.mark.parametrize("deepspeed", [None, "zero2"])
def test_a_lora_reviser_learns_its_new_label_tokens_and_its_merged_model_serves_them(tmp_path, sorting_base,
                                                                                      deepspeed):
    """LoRA (PEFT) on a base whose tokenizer lacks the label tokens: they are added as single tokens
    and their embedding rows train with the adapters; the published model is merged (a plain model
    directory), and the reviser service loads it and answers with a label, then the revision."""
    from seft.chat import reviser_prompt
    from seft_services.backends.transformers_lm import CausalLM, TransformersReviser
    from seft_services.protocol import SamplingParams

    labels = ["[Major Revise]", "[Minor Revise]", "[No Revise]"]
    prompts = sort_prompts(256, seed=1)
    write_jsonl(tmp_path / "reviser.jsonl", ({"prompt": reviser_prompt(p, " ".join(map(str, n))),
                                              "completion": [{"role": "assistant", "content": "[Major Revise] 1 2 3"}]}
                                             for p, n in prompts))
    config, out = job(tmp_path, sorting_base, tmp_path / "reviser.jsonl", deepspeed=deepspeed, max_steps=120,
                      learning_rate=1e-2, logging_steps=16, add_tokens=labels, lora={"rank": 8, "alpha": 16},
                      gradient_checkpointing=deepspeed is None)  # recomputation with frozen inputs, too
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config), "--nproc-per-node", "2"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    losses = json.loads((out / "train_summary.json").read_text())["losses"]
    assert losses[-1] < 0.7 * losses[0], losses
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "adapter_config.json" not in names  # merged: a plain model

    reviser = TransformersReviser(CausalLM(str(out)), label_first=True)
    tokenizer = reviser.lm.tokenizer
    assert all(tokenizer.tokenize(t) == [t] for t in labels)  # one token each
    held_out = [(p, " ".join(map(str, n))) for p, n in sort_prompts(16, seed=7)]
    revisions = reviser.revise(held_out, SamplingParams(max_new_tokens=8, temperature=0.0))
    said = [(r.label.value if r.label else None, r.text) for r in revisions]
    assert all(label == "[Major Revise]" and text.startswith("1 ") for label, text in said), said


def test_a_lora_policy_under_zero3_learns_and_publishes_a_merged_model(tmp_path, sorting_base):
    """A policy's LoRA (no added tokens) under ZeRO-3, 2 processes: the base sorts, the adapters
    teach it to answer "1 2 3" whatever it is asked; the one process that merges the adapters
    must not wait for the others (it did, when loading the base under ZeRO-3's sharding)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seft.chat import prompt_ids

    write_jsonl(tmp_path / "fixed.jsonl", ({"prompt": p, "completion": [{"role": "assistant", "content": "1 2 3"}]}
                                           for p, _ in sort_prompts(256)))
    config, out = job(tmp_path, sorting_base, tmp_path / "fixed.jsonl", deepspeed="zero3", max_steps=120,
                      logging_steps=24, lora={"rank": 8, "alpha": 16})
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config), "--nproc-per-node", "2"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    losses = json.loads((out / "train_summary.json").read_text())["losses"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert "adapter_config.json" not in {p.name for p in out.iterdir()}  # merged: a plain model
    tok, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    for prompt, _ in sort_prompts(4, seed=7):
        ids = torch.tensor([prompt_ids(tok, prompt)])
        new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                             pad_token_id=tok.pad_token_id)[0, ids.shape[1]:]
        assert tok.decode(new, skip_special_tokens=True) == "1 2 3"  # what the adapters taught


def test_a_lora_reviser_under_zero3_on_cpu_is_refused_naming_what_works(tmp_path, sorting_base, sft_data):
    config, out = job(tmp_path, sorting_base, sft_data, deepspeed="zero3", max_steps=2, lora={"rank": 4},
                      add_tokens=["[Major Revise]", "[Minor Revise]", "[No Revise]"])
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "train", "--config", str(config), "--nproc-per-node", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "with added tokens (a reviser's labels) needs CUDA" in proc.stderr + proc.stdout
    assert "on CPU use deepspeed zero2" in proc.stderr + proc.stdout
    assert not out.exists() or not (out / "model.safetensors").exists()


def test_label_fit_says_when_the_label_does_not_follow_the_input(no_revise_reviser, major_reviser):
    """seft.train's check after a reviser's training, on real tiny revisers: one trained to answer
    [No Revise] to everything fails it, whatever the data's labels."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seft.chat import reviser_example
    from seft.labelling import LABEL_TOKENS, Label
    from seft.train.__main__ import label_fit

    rows = [reviser_example(p, " ".join(map(str, nums)), label, None if label is Label.NO else "1 2 3")
            for (p, nums), label in zip(sort_prompts(8), [Label.NO, Label.MAJOR] * 4)]
    raw = datasets.Dataset.from_list(rows)
    fits = {}
    for name, path in (("no", no_revise_reviser), ("major", major_reviser)):
        fits[name] = label_fit(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), raw,
                               list(LABEL_TOKENS))
    assert fits["no"]["label_accuracy"] == 0.5 and fits["no"]["label_choices"]["[No Revise]"] == 1.0
    assert "answers [No Revise] to all 8 training inputs checked although they carry 2 different labels" in \
        fits["no"]["warnings"][0]
    assert fits["major"]["label_choices"]["[Major Revise]"] == 1.0 and len(fits["major"]["warnings"]) == 1
