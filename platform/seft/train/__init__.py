"""`seft train`: one training entrypoint for every model the recipes fine-tune.

It is always launched by torchrun (`torchrun -m seft.train --config JOB.json`): locally as a
subprocess of the executor, on Kubernetes by a Kubeflow PyTorchJob. Data is TRL's
conversational JSONL: prompt-completion for `sft` (the loss on completion tokens only),
prompt-chosen-rejected for `dpo` and `orpo` (TRL's trainers, for the baseline policies)."""

from __future__ import annotations

import sys
from pathlib import Path

from typing import Literal

from pydantic import Field

from seft.spec import StoreConfig, Training

DEEPSPEED_CONFIGS = Path(__file__).parent / "deepspeed"


class TrainJob(Training):
    model: str = Field(description="HF model directory to start from")
    data: str = Field(description="JSONL of {prompt, completion} conversations")
    output_dir: str = Field(description="where the trained HF model directory is saved")
    seed: int = 0
    method: Literal["sft", "dpo", "orpo"] = "sft"
    beta: float = Field(0.1, gt=0, allow_inf_nan=False, description="dpo: beta; orpo: lambda")
    add_tokens: list[str] = Field([], description="added to the tokenizer as special tokens, with the embeddings "
                                                  "resized, before training (the adaptive reviser's labels)")
    store: StoreConfig | None = Field(None, description="with it, model, data and output_dir are URIs in this "
                                                        "store (a PyTorchJob's job): fetched, and the output published")

    def columns(self) -> tuple[str, ...]:
        return ("prompt", "completion") if self.method == "sft" else ("prompt", "chosen", "rejected")

    def deepspeed_config(self) -> str | None:
        if self.deepspeed is None:
            return None
        named = DEEPSPEED_CONFIGS / f"{self.deepspeed}.json"
        return str(named) if named.exists() else self.deepspeed


def torchrun_command(config_path: Path, nproc_per_node: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc_per_node}", "-m", "seft.train", "--config", str(config_path)]
