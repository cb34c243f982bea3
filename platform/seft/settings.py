"""The building blocks of every settings model: the base (unknown keys are errors), sampling and
training hyper-parameters. seft.spec assembles the pipeline spec from these and the recipes'
own settings (seft.recipes.*)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_NEW_TOKENS = 256  # a sampling default


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(Model):
    max_new_tokens: int = Field(MAX_NEW_TOKENS, ge=1, le=32768)
    temperature: float = Field(0.7, ge=0.0, le=10.0, allow_inf_nan=False)  # 0 = greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)


class LoRA(Model):
    """PEFT LoRA adapters instead of full fine-tuning; the published model is merged."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(["all-linear"], min_length=1,
                                      description="module names, or [all-linear]: every linear layer but the output")


class Training(Model):
    """One `seft train` job's hyper-parameters (the model and data come from the stage)."""

    learning_rate: float = Field(2e-5, gt=0, allow_inf_nan=False)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup", "warmup_stable_decay"] = "cosine"
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    batch_size: int = Field(128, ge=1, description="global batch: per device x processes x accumulation")
    per_device_batch_size: int = Field(8, ge=1)
    max_length: int = Field(2048, ge=8)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    decay_ratio: float = Field(0.2, gt=0, lt=1, description="warmup_stable_decay: the share of the steps, at the end, "
                                                            "over which the rate falls to 0 (cosine)")
    weight_decay: float = Field(0.0, ge=0)
    bf16: bool = True
    deepspeed: str | None = Field("zero3", description="zero2, zero3, a DeepSpeed JSON path, or none")
    nproc_per_node: int = Field(1, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int | None = Field(None, ge=1, description="checkpoint every N steps; a training started again "
                                                           "resumes from the last complete checkpoint")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept")
    gradient_checkpointing: bool = Field(False, description="recompute activations: less memory, more time")
    lora: LoRA | None = Field(None, description="train LoRA adapters (PEFT), publish the merged model")
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        ["tensorboard"], description="loss curves; TensorBoard's event files are part of the trained model's artifact")

    @field_validator("deepspeed")
    @classmethod
    def _none(cls, v: str | None) -> str | None:
        # `none`, not only null: `kubectl apply` drops a null field, and the default would return
        return None if v == "none" else v

    @model_validator(mode="after")
    def _batch_divides(self) -> "Training":
        per_step = self.per_device_batch_size * self.nproc_per_node
        if self.batch_size % per_step:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of per_device_batch_size x "
                f"nproc_per_node = {per_step}")
        return self
