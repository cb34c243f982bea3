"""The torchrun worker of `seft train`. See seft/train/__init__.py."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from seft.errors import SeftError
from seft.specfile import load_yaml, validate
from seft.train import TrainJob, torch_threads


def load_job(argv: list[str]) -> TrainJob:
    parser = argparse.ArgumentParser(prog="python -m seft.train")
    parser.add_argument("--config", required=True, help="JSON or YAML TrainJob")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    return validate(TrainJob, load_yaml(args.config, args.set), args.config)


def localize_job(job: TrainJob, scratch: Path) -> tuple[TrainJob, Callable[[dict], None] | None]:
    """A job whose model, data and output_dir are store URIs (a PyTorchJob's) with local paths
    instead (under `scratch`), and what publishes the trained model (all of it or nothing)
    afterwards."""
    if job.store is None:
        return job, None
    from seft.storage import localize, open_store

    store = open_store(job.store, scratch=scratch)
    root = store.uri().rstrip("/") + "/"

    def key(field: str) -> str:
        uri = getattr(job, field)
        if not uri.startswith(root):
            raise SeftError(f"{field} {uri!r} is not in the store {root}")
        return uri[len(root):]

    output = key("output_dir")
    local = job.model_copy(update={"model": str(localize(store, key("model"), scratch)),
                                   "data": str(localize(store, key("data"), scratch)),
                                   "output_dir": str(store.staging(output)),
                                   "checkpoint_dir": key("checkpoint_dir") if job.checkpoint_dir else None})
    return local, lambda summary: store.publish(Path(local.output_dir), output,
                                                {"stage": output, "summary": summary})


def checkpoints(job: TrainJob, original: TrainJob):
    """Where the Trainer writes checkpoints (one directory for the node's processes), and their
    durable copy: the store's, for a training on store URIs."""
    import tempfile

    from seft.storage import open_store
    from seft.train.checkpoints import Checkpoints, job_digest

    digest = job_digest(original, Path(job.data))
    if job.checkpoint_dir and job.store is None:
        return Checkpoints(Path(job.checkpoint_dir), digest, job.save_total_limit)
    local = Path(tempfile.gettempdir()) / f"seft-checkpoints-{digest[:16]}"
    if job.checkpoint_dir:
        return Checkpoints(local, digest, job.save_total_limit, open_store(job.store), job.checkpoint_dir)
    return Checkpoints(local, digest, job.save_total_limit)


def train(job: TrainJob) -> dict:
    import tempfile

    # What a job on store URIs downloads (objects no artifact holds: a model put there with `seft
    # store cp`) and stages goes here, and is gone after, trained or not.
    with tempfile.TemporaryDirectory(prefix="seft-train-") as scratch:
        return train_in(job, Path(scratch))


def train_in(job: TrainJob, scratch: Path) -> dict:
    import torch

    torch.set_num_threads(torch_threads(os.environ))
    ds_config = job.deepspeed_config()
    if ds_config:  # before anything else touches torch.distributed (DeepSpeed on CPU needs it)
        import importlib

        import deepspeed

        # On CPU DeepSpeed would build its shared-memory all-reduce here: C++ compiled at the first
        # training of each environment (g++, about a minute on 2 cores), under a lock file that a
        # training killed mid-build leaves behind, hanging every later one. Only inference_all_reduce
        # (tensor-parallel inference) uses it; a training's all-reduce is torch.distributed's.
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None  # (deepspeed.comm.torch is torch)
        deepspeed.init_distributed()

    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer
    from transformers.integrations import is_deepspeed_zero3_enabled

    from seft.chat import encode_example

    world = int(os.environ.get("WORLD_SIZE", "1"))
    # Local paths first: the Trainer makes directories under output_dir, which must not be a URI.
    original = job
    job, publish = localize_job(job, scratch)
    ckpts = checkpoints(job, original)
    raw = load_dataset("json", data_files=job.data, split="train")
    for column in job.columns():
        if column not in raw.column_names:
            raise SeftError(f"{job.data}: records need '{column}' for method {job.method!r} "
                            f"(TRL's conversational format: {', '.join(job.columns())})")
    # The arguments before from_pretrained: ZeRO-3 shards weights as they load.
    args = training_arguments(job, world, ds_config, use_cpu=not torch.cuda.is_available(), checkpoints=ckpts.local,
                              examples=len(raw))
    resume = _on_one_process(args, ckpts.restore) if job.save_steps else None
    if resume and int(os.environ.get("RANK", "0")) == 0:
        print(f"resuming from {resume}", flush=True)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(job.output_dir) / "logs")  # in the published model
    tokenizer = AutoTokenizer.from_pretrained(job.model)
    # Single tokens: one forward pass scores the labels, and vLLM can stop at [No Revise].
    before = len(tokenizer)
    added = tokenizer.add_tokens(job.add_tokens, special_tokens=True) if job.add_tokens else 0
    model = AutoModelForCausalLM.from_pretrained(job.model)
    if added:
        model.resize_token_embeddings(len(tokenizer))
        start_from_own_words(model, tokenizer, range(before, len(tokenizer)))
    if job.gradient_checkpointing:
        model.config.use_cache = False  # the cache is useless in training and clashes with recomputation
    zero3 = is_deepspeed_zero3_enabled()  # read now: publishing a LoRA model unsets it
    if job.lora:
        model = with_lora(model, job.lora, list(range(before, len(tokenizer))), zero3)
    if job.method == "sft":
        def encode(example: dict) -> dict:
            completion = "".join(m["content"] for m in example["completion"])
            return encode_example(tokenizer, example["prompt"], completion, job.max_length)

        trainer = Trainer(model=model, args=args, train_dataset=raw.map(encode, remove_columns=raw.column_names),
                          data_collator=CompletionCollator(tokenizer.pad_token_id))
    else:  # TRL renders the conversations with the model's chat template, as seft.chat does
        trainer = preference_trainer(job.method)(model=model, args=args, train_dataset=raw,
                                                 processing_class=tokenizer)
    if job.save_steps:
        trainer.add_callback(mark_checkpoints(ckpts))
    result = trainer.train(resume_from_checkpoint=resume)
    if job.lora:  # the adapters (gathered under ZeRO-3), then one merged model on rank 0
        adapters = ckpts.local / "adapters"
        trainer.save_model(str(adapters))
        if trainer.is_world_process_zero():
            merged_lora(job, len(tokenizer) if added else None, adapters).save_pretrained(job.output_dir)
    else:
        trainer.save_model(job.output_dir)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    summary = {"train_loss": result.training_loss, "losses": losses, "logging_steps": job.logging_steps,
               "steps": result.global_step, "train_runtime": result.metrics.get("train_runtime"),
               "examples": len(raw), "world_size": world, "device": args.device.type,
               "threads": torch.get_num_threads(), "method": job.method}
    if added and job.method == "sft" and trainer.is_world_process_zero() and not zero3:
        summary.update(label_fit(trainer.model, tokenizer, raw, job.add_tokens))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(job.output_dir)
        # The Trainer pickles its arguments; models here are safetensors only, never pickles.
        (Path(job.output_dir) / "training_args.bin").unlink(missing_ok=True)
        (Path(job.output_dir) / "train_summary.json").write_text(json.dumps(summary, indent=2))
        if publish:
            publish(summary)
        ckpts.discard()
    return summary


def label_fit(model, tokenizer, raw, tokens: list[str], n: int = 32) -> dict:
    """Whether the trained model's choice among the added tokens (the reviser's labels) follows
    its input: on up to `n` training examples whose completion starts with one, the share it
    ranks first where trained to, and the shares of its choices. A choice that is one token for
    every input although the data has several is a warning (the label was not learnt)."""
    import torch

    from seft.chat import prompt_ids

    ids = tokenizer.convert_tokens_to_ids(tokens)
    wanted, chosen = [], []
    model.eval()
    with torch.no_grad():
        for example in raw.select(range(min(n, len(raw)))):
            completion = "".join(m["content"] for m in example["completion"])
            first = next((t for t in tokens if completion.startswith(t)), None)
            if first is None:
                continue
            prompt = torch.tensor([prompt_ids(tokenizer, example["prompt"])], device=model.device)
            logits = model(input_ids=prompt).logits[0, -1, ids]
            wanted.append(first)
            chosen.append(tokens[int(logits.argmax())])
    if not wanted:
        return {}
    fit = {"label_accuracy": sum(w == c for w, c in zip(wanted, chosen)) / len(wanted),
           "label_choices": {t: chosen.count(t) / len(chosen) for t in tokens}}
    if len(set(wanted)) > 1 and len(set(chosen)) == 1:
        fit["warnings"] = [f"the trained model answers {chosen[0]} to all {len(chosen)} training inputs checked "
                           f"although they carry {len(set(wanted))} different labels: its label does not follow its "
                           "input (more steps, a higher or constant learning rate; README, \"Label health\")"]
    return fit


def start_from_own_words(model, tokenizer, new_ids) -> None:
    """Each added token's embedding rows (input, and output where untied) start as the mean of its
    own words' rows: `[No Revise]` from "No Revise". resize_token_embeddings starts them all at the
    mean of every row (plus noise): on SmolLM2 the three labels began nearly equal (cosine 0.9996)
    and the reviser never learnt to tell them apart. A token whose words the tokenizer does not all
    know (a word-level vocabulary without "Major") keeps resize's start: its known words alone
    could start different labels the same ("Revise")."""
    import contextlib

    import torch
    from transformers.integrations import is_deepspeed_zero3_enabled

    pieces = ((i, tokenizer(tokenizer.convert_ids_to_tokens(i).strip("[]<>|"), add_special_tokens=False)["input_ids"])
              for i in new_ids)
    words = {i: ids for i, ids in pieces if ids and tokenizer.unk_token_id not in ids}
    rows = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not rows[0]:
        rows.append(output.weight)
    gathered = contextlib.nullcontext()
    if is_deepspeed_zero3_enabled():  # the rows are sharded over the processes
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(rows, modifier_rank=0)
    with gathered, torch.no_grad():
        for weight in rows:
            for i, ids in words.items():
                weight[i] = weight[ids].mean(dim=0)


def with_lora(model, cfg, new: list[int], zero3: bool):
    """PEFT LoRA adapters on the model; the tokens added for this training (`new` ids: the
    reviser's labels) train their own embedding rows too (tied output rows with them)."""
    import torch
    from peft import LoraConfig, get_peft_model

    if zero3 and new and not torch.cuda.is_available():  # PEFT's own limit (TrainableTokensLayer)
        raise SeftError("lora under ZeRO-3 with added tokens (a reviser's labels) needs CUDA: PEFT gathers "
                        "their sharded rows on GPUs only; on CPU use deepspeed zero2 (which shards the adapters' "
                        "optimizer state) or none")
    return get_peft_model(model, LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules="all-linear" if cfg.target_modules == ["all-linear"] else cfg.target_modules,
        task_type="CAUSAL_LM", trainable_token_indices=new or None))


def merged_lora(job: TrainJob, vocab: int | None, adapters: Path):
    """The base model (resized to `vocab` as for training) with the trained adapters merged in:
    what the services and vLLM load."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # else under ZeRO-3 this one process would wait for the others to shard it
    base = AutoModelForCausalLM.from_pretrained(job.model)
    if vocab:
        base.resize_token_embeddings(vocab)
    return PeftModel.from_pretrained(base, str(adapters)).merge_and_unload()


def _on_one_process(args, fn):
    """fn() on each node's first process while the others wait; every process gets its result."""
    import torch.distributed as dist

    with args.main_process_first(local=True, desc="checkpoints"):
        result = fn() if args.local_process_index == 0 else None
    if dist.is_available() and dist.is_initialized():
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    return result


def mark_checkpoints(ckpts):
    """A TrainerCallback: once every rank has saved a checkpoint, rank 0 marks it complete."""
    import torch.distributed as dist
    from transformers import TrainerCallback

    class MarkCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if dist.is_available() and dist.is_initialized():
                dist.barrier()
            if state.is_world_process_zero:
                ckpts.mark(state.global_step)
            if dist.is_available() and dist.is_initialized():
                dist.barrier()

    return MarkCheckpoints()


def training_arguments(job: TrainJob, world: int, ds_config: str | None, use_cpu: bool, checkpoints: Path,
                       examples: int):
    """The one place a TrainJob becomes HF TrainingArguments (sft) or TRL's config (dpo, orpo).
    The Trainer's own output_dir holds its checkpoints; the model is saved to job.output_dir, with
    the loss curves' event files under logs/. examples: the training set's size."""
    from transformers import TrainingArguments

    for tracker in job.report_to:
        if importlib.util.find_spec(tracker) is None:
            raise SeftError(f"report_to: {tracker!r} is not installed (pip install {tracker}), or drop it")
    per_step = job.per_device_batch_size * world
    if job.batch_size % per_step:
        raise SeftError(f"batch_size {job.batch_size} is not a multiple of per_device_batch_size "
                        f"{job.per_device_batch_size} x {world} processes")
    common = dict(
        output_dir=str(checkpoints), per_device_train_batch_size=job.per_device_batch_size,
        gradient_accumulation_steps=job.batch_size // per_step, learning_rate=job.learning_rate,
        lr_scheduler_type=job.lr_scheduler, num_train_epochs=job.epochs, max_steps=job.max_steps or -1,
        warmup_steps=job.warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
        weight_decay=job.weight_decay, logging_steps=job.logging_steps,
        save_strategy="steps" if job.save_steps else "no", save_steps=job.save_steps or 500,
        save_total_limit=job.save_total_limit, save_only_model=False,
        report_to=list(job.report_to),
        gradient_checkpointing=job.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works with frozen inputs (LoRA)
        seed=job.seed, data_seed=job.seed, bf16=job.bf16, deepspeed=ds_config, use_cpu=use_cpu,
        disable_tqdm=True, dataloader_num_workers=0)
    if job.lr_scheduler == "warmup_stable_decay":  # HF's WSD takes its decay in steps, not as a share
        steps = job.max_steps or math.ceil(job.epochs * math.ceil(examples / job.batch_size))
        common["lr_scheduler_kwargs"] = {"num_decay_steps": max(1, round(job.decay_ratio * steps))}
    if job.method == "sft":
        return TrainingArguments(**common, remove_unused_columns=False)
    if job.method == "dpo":
        from trl import DPOConfig
        return DPOConfig(**common, beta=job.beta, max_length=job.max_length)
    from trl.experimental.orpo import ORPOConfig
    return ORPOConfig(**common, beta=job.beta, max_length=job.max_length)


def preference_trainer(method: str):
    if method == "dpo":
        from trl import DPOTrainer
        return DPOTrainer
    from trl.experimental.orpo import ORPOTrainer  # ORPO lives in trl.experimental since TRL 0.2x
    return ORPOTrainer


class CompletionCollator:
    """Right-pads a batch; padding is masked out of the loss."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]):
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_id] * pad)
            labels.append(f["labels"] + [-100] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}


def main(argv: list[str] | None = None) -> int:
    if "LOCAL_RANK" not in os.environ:
        print("seft.train runs under torchrun: use `seft train` or "
              "`torchrun --nproc_per_node N -m seft.train --config JOB`", file=sys.stderr)
        return 2
    try:
        train(load_job(sys.argv[1:] if argv is None else argv))
    except SeftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _leave_process_group(wait_for_all=False)
        return 1
    _leave_process_group(wait_for_all=True)
    # The model and summary are written. Skip the interpreter's teardown: the process group's C++
    # threads can abort a rank there ("terminate called without an active exception", seen in CI
    # once with plain DDP and once with ORPO), which would fail a training that succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _leave_process_group(wait_for_all: bool) -> None:
    """After a success every rank waits for the others (rank 0 is still saving when the rest
    finish), then all leave the group together."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait_for_all:  # NCCL wants each rank's own GPU named (else it warns that it guesses)
            dist.barrier(device_ids=[torch.cuda.current_device()] if dist.get_backend() == "nccl" else None)
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
