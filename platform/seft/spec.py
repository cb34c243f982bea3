"""The pipeline spec: one pydantic model, loaded from YAML by `seft run` and used as the
SeftPipeline custom resource's spec on Kubernetes. Defaults are the SEFT paper's (Table 5)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LabelName = Literal["major", "minor", "no"]
# Defaults used in more than one place (spec fields, `seft serve` / `seft revise` flags, the services).
MAX_NEW_TOKENS = 256  # a sampling default
SERVICE_MAX_BATCH = 256  # the most items a service takes in one call
SERVICE_MAX_NEW_TOKENS = 4096  # the largest max_new_tokens a service accepts
SECRETISH = re.compile(r"secret|password|token|access_?key|credential", re.IGNORECASE)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(Model):
    max_new_tokens: int = Field(MAX_NEW_TOKENS, ge=1, le=32768)
    temperature: float = Field(0.7, ge=0.0, le=10.0, allow_inf_nan=False)  # 0 = greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)


class Training(Model):
    """One `seft train` job's hyper-parameters (the model and data come from the stage)."""

    learning_rate: float = Field(2e-5, gt=0, allow_inf_nan=False)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    batch_size: int = Field(128, ge=1, description="global batch: per device x processes x accumulation")
    per_device_batch_size: int = Field(8, ge=1)
    max_length: int = Field(2048, ge=8)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    bf16: bool = True
    deepspeed: str | None = Field("zero3", description="zero2, zero3, a DeepSpeed JSON path, or null")
    nproc_per_node: int = Field(1, ge=1)
    logging_steps: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _batch_divides(self) -> "Training":
        per_step = self.per_device_batch_size * self.nproc_per_node
        if self.batch_size % per_step:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of per_device_batch_size x "
                f"nproc_per_node = {per_step}")
        return self


class TinyModel(Model):
    """A Llama built from a config, for the quickstart (no download)."""

    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    head_dim: int = Field(64, ge=8)
    intermediate_size: int = Field(512, ge=8)


class Bootstrap(Model):
    """Makes the quickstart's inputs: a task with graded rewards, a tokenizer, a tiny Llama, a
    weak initial policy (SFT on worse responses) and a stronger external generator (SFT on better
    responses) that is also the reviser's base model."""

    task: Literal["sort", "spell"] = Field("sort", description="sort: sort a list of numbers (seft.tasks.sorting); "
                                           "spell: fix a sentence's spelling (seft.tasks.spelling)")
    preference_prompts: int = Field(5000, ge=20)
    unlabelled_prompts: int = Field(4000, ge=1)
    model: TinyModel = TinyModel()
    policy_ranks: list[int] = [3, 4, 5]
    generator_ranks: list[int] = [1, 2]
    policy_training: Training
    generator_training: Training

    @field_validator("policy_ranks", "generator_ranks")
    @classmethod
    def _ranks(cls, v: list[int]) -> list[int]:
        if not v or any(r < 0 or r > 6 for r in v):
            raise ValueError(f"ranks must be a non-empty list within 0..6, got {v}")
        return v


class Data(Model):
    preference: str | None = Field(None, description="JSONL: prompt + responses ranked 0 (best)..6")
    prompts: str | None = Field(None, description="JSONL of unlabelled prompts for evolution")
    test_size: int = Field(200, ge=1, description="preference prompts held out for evaluation")
    warmup_fraction: float = Field(0.3, gt=0, lt=1, description="warm-up : adaptive split = 3 : 7")
    original_ranks: list[int] = Field([1, 2, 3, 4, 5, 6], description="ranks an original is drawn from")

    @field_validator("original_ranks")
    @classmethod
    def _ranks(cls, v: list[int]) -> list[int]:
        if not v or any(r < 0 or r > 6 for r in v) or len(set(v)) != len(v):
            raise ValueError(f"must be distinct ranks within 0..6, got {v}")
        return v


class Models(Model):
    policy: str | None = None
    reviser_base: str | None = None
    generator: str | None = Field(None, description="the external generator")


class Critic(Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    backend: Literal["rule", "reward-model"]
    callable: str | None = Field(None, description="rule: 'package.module:function'")
    model: str | None = Field(None, description="reward-model: an HF sequence-classification dir")

    @model_validator(mode="after")
    def _backend_fields(self) -> "Critic":
        need, other = ("callable", "model") if self.backend == "rule" else ("model", "callable")
        if getattr(self, need) is None:
            raise ValueError(f"backend {self.backend!r} needs '{need}'")
        if getattr(self, other) is not None:
            raise ValueError(f"backend {self.backend!r} takes no '{other}'")
        if self.callable is not None and ":" not in self.callable:
            raise ValueError(f"callable must look like 'package.module:function', got {self.callable!r}")
        return self


class Labelling(Model):
    alpha: float = Field(0.3, allow_inf_nan=False)
    beta: float = Field(1.0, allow_inf_nan=False)
    p: float = Field(0.8, ge=0, le=1)
    relabel_to: LabelName = "major"
    critic: str | None = Field(None, description="name of the critic that labels; default the first")

    @model_validator(mode="after")
    def _ordered(self) -> "Labelling":
        if self.alpha > self.beta:
            raise ValueError(f"alpha ({self.alpha}) must not exceed beta ({self.beta})")
        return self


class JudgeSpec(Model):
    """An LLM judge (MT-Bench single-answer grading, seft.judge) that also rates each policy's
    held-out answers in the evaluate stage. Any OpenAI-compatible endpoint; its API key, if it
    needs one, comes from the environment variable `api_key_env`, never from the spec."""

    endpoint: str = Field(pattern=r"^https?://", description="base URL, e.g. http://vllm-judge:8000/v1")
    model: str = Field(min_length=1, description="the judge model's name at that endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    prompts: str | None = Field(None, description="FastChat's judge_prompts.jsonl; default: our prompt")
    prompt: str = Field("single-v1", description="which prompt of `prompts`")
    concurrency: int = Field(8, ge=1, le=256)


class Evaluation(Model):
    sampling: Sampling = Sampling(temperature=0.0)
    judge: JudgeSpec | None = None


class StoreConfig(Model):
    """Where artifacts live. Credentials are never part of the spec: for s3:// they come from
    the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or `credentials_dir`, a mounted
    Kubernetes Secret with files of those names."""

    uri: str = Field("file://./runs", description="file://PATH or s3://BUCKET[/PREFIX]")
    endpoint: str | None = Field(None, description="s3: host[:port] of MinIO / S3")
    secure: bool = Field(True, description="s3: use TLS")
    region: str | None = None
    ca_bundle: str | None = Field(None, description="s3: a CA certificate file to trust")
    credentials_dir: str | None = Field(None, description="s3: a mounted Secret directory")
    parallel: int = Field(4, ge=1, le=64, description="s3: concurrent transfers (files, and parts of each)")
    retries: int = Field(4, ge=0, le=20, description="s3: retries with backoff per request")

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        if isinstance(data, dict):
            leaked = [k for k in data if SECRETISH.search(str(k)) and k != "credentials_dir"]
            if leaked:
                raise ValueError(f"credentials never go in the spec (found {', '.join(leaked)}): set "
                                 "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment or use credentials_dir")
        return data

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("file://", "s3://")):
            raise ValueError(f"expected file://PATH or s3://BUCKET[/PREFIX], got {v!r}")
        return v


class Services(Model):
    batch_size: int = Field(64, ge=1, description="items per gRPC call")
    max_batch: int = Field(SERVICE_MAX_BATCH, ge=1, description="largest batch a service accepts")


QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"  # a Kubernetes resource quantity


class Resources(Model):
    """A container's requests (and limits: the same, so pods are Guaranteed)."""

    cpu: str = Field("2", pattern=QUANTITY)
    memory: str = Field("8Gi", pattern=QUANTITY)
    gpus: int = Field(0, ge=0, description="nvidia.com/gpu")


class Cluster(Model):
    """How the operator runs the pipeline on Kubernetes; `seft run` ignores it. Credentials for
    an s3:// store come from the Secret `store_secret` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""

    image: str = Field("ghcr.io/seft-platform/seft:0.1.0", description="the platform image (Dockerfile)")
    vllm_image: str = Field("vllm/vllm-openai:v0.11.0", description="the vLLM sidecar of generators and revisers")
    store_secret: str = Field("seft-store", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    retries: int = Field(2, ge=0, le=10, description="a failed Job or PyTorchJob is re-created up to this often")
    vllm: Resources = Resources(cpu="8", memory="64Gi", gpus=1)
    service: Resources = Resources(cpu="2", memory="8Gi")
    stage: Resources = Resources(cpu="2", memory="8Gi")
    training_nodes: int = Field(1, ge=1, description="PyTorchJob replicas (1 master + workers)")
    training: Resources = Resources(cpu="32", memory="256Gi", gpus=8)


ReviserBaseline = Literal["aligner", "label"]
PolicyBaseline = Literal["sft_chosen", "dpo", "orpo", "sft_generator", "external_only"]


class BaselineTrainings(Model):
    sft_chosen: Training | None = None
    dpo: Training | None = None
    orpo: Training | None = None
    sft_generator: Training | None = None
    external_only: Training | None = None


class Baselines(Model):
    """The paper's baselines, trained on the same data by the same stages and evaluated beside
    SEFT. Revisers continue the preliminary reviser on the adaptive split, as the adaptive
    reviser does: `aligner` always revises (Aligner, no labels); `label` takes its labels from
    the original's rank alone (the paper's Appendix B). Policies start from the initial policy:
    `sft_chosen` (SFT on the preference data's best responses), `dpo` (TRL), `orpo` (TRL's
    experimental ORPO), `sft_generator` (SFT on the external generator's unrevised answers) and
    `external_only` (external evolution without internal evolution first): the paper's Table 2."""

    revisers: list[ReviserBaseline] = ["aligner", "label"]
    policies: list[PolicyBaseline] = ["sft_chosen", "dpo", "orpo", "sft_generator", "external_only"]
    no_revise_share: float = Field(0.1, ge=0, le=1, description="label reviser: the share of rank-0 originals "
                                   "labelled [No Revise]; the rest are [Major Revise] (Appendix B)")
    beta: float = Field(0.1, gt=0, allow_inf_nan=False, description="DPO's beta; ORPO's lambda")
    training: BaselineTrainings = Field(BaselineTrainings(),
                                        description="a baseline policy's training where it differs from "
                                                    "policy_training (DPO wants a lower learning rate)")

    @field_validator("revisers", "policies")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat a baseline, got {v}")
        return v


class Refine(Model):
    """Inference-time self-refinement, an option of the generator service: answer (the critic's
    best of `samples` draws), then refine the answer `rounds` times."""

    rounds: int = Field(1, ge=0, le=8)
    samples: int = Field(1, ge=1, le=16, description="answers drawn before refining; the critic picks one")
    keep_best: bool = Field(True, description="drop a refinement the critic scores below its input")


class SelfEvolution(Model):
    """The SELF and EVOLVE recipes (`recipe: self | evolve`). The defaults are SELF's; EVOLVE's
    differ where EVOLVE_DEFAULTS says. One model answers and refines its own answers: a meta-skill
    stage teaches it both (SFT on a corpus of response, feedback, refined response), then each
    round it answers the unlabelled prompts, refines its answers (`inference`), keeps what passes
    `filter`, and is fine-tuned on that."""

    rounds: int = Field(2, ge=1, le=10)
    feedback: str | None = Field(None, description="'package.module:function(prompt, response) -> str': the "
                                 "teacher's feedback for a corpus built from the preference data (SELF)")
    corpus: str | None = Field(None, description="a meta-skill corpus JSONL (id, prompt, response, feedback, "
                               "refined); default: built from prepare's splits (original -> best response)")
    critic: str | None = Field(None, description="the critic that scores refinements; default: the first")
    inference: Refine = Refine()
    filter: Literal["critic", "self", "none"] = Field(
        "critic", description="which answers a round keeps: the critic's (min_reward), the model's own "
                              "judgement (its feedback equals `accept`), or all")
    min_reward: float = Field(1.0, allow_inf_nan=False)
    accept: str = Field("correct", min_length=1, description="the feedback that judges an answer right")
    restart: bool = Field(False, description="each round trains the initial policy on the corpus and every "
                                             "round's data so far, instead of continuing the last round's model")
    method: Literal["sft", "dpo"] = Field("sft", description="each round's training: SFT on the kept answers, "
                                          "or DPO on the refinement chains' pairs (EVOLVE)")
    reconstruct: bool = Field(True, description="train direct answers on the refined ones (EVOLVE's "
                                                "reconstructed dataset); else only the refinement skill")
    training: Training | None = Field(None, description="the meta-skill stage's; default policy_training "
                                      "(SFT rounds train with policy_training)")
    dpo: Training | None = Field(None, description="DPO on refined > original pairs after the meta-skill stage "
                                 "(EVOLVE's activation), and rounds with method dpo; null: no DPO stage")
    beta: float = Field(0.1, gt=0, allow_inf_nan=False, description="DPO's beta")

    @field_validator("feedback")
    @classmethod
    def _callable(cls, v: str | None) -> str | None:
        if v is not None and ":" not in v:
            raise ValueError(f"must look like 'package.module:function', got {v!r}")
        return v


# Both recipes keep only what the critic accepts: with `filter: none` EVOLVE's rounds also train on
# wrong answers, and on the quickstart's task its second round then fell below its first.
EVOLVE_DEFAULTS = {"inference": {"rounds": 2, "samples": 4, "keep_best": True}}


def _paper_policy_training() -> Training:
    return Training(learning_rate=5e-7, lr_scheduler="linear")


class PipelineSpec(Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    recipe: Literal["seft", "self", "evolve"] = "seft"
    seed: int = Field(0, ge=0)
    store: StoreConfig = StoreConfig()
    bootstrap: Bootstrap | None = None
    data: Data = Data()
    models: Models = Models()
    critics: list[Critic] = Field(min_length=1)
    labelling: Labelling = Labelling()
    reviser_training: Training = Training()
    policy_training: Training = Field(default_factory=_paper_policy_training)
    generation: Sampling = Sampling()
    revision: Sampling = Sampling(temperature=0.0)
    evaluation: Evaluation = Evaluation()
    baselines: Baselines | None = Field(None, description="train and evaluate the paper's baselines too")
    self_evolution: SelfEvolution | None = Field(None, description="recipe self | evolve: its settings")
    services: Services = Services()
    cluster: Cluster = Cluster()

    @field_validator("store", mode="before")
    @classmethod
    def _store_uri(cls, v: Any) -> Any:
        return {"uri": v} if isinstance(v, str) else v  # `store: s3://...` is short for `store: {uri: ...}`

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, data: Any) -> Any:
        """self and evolve always have a self_evolution section; evolve's unset fields take
        EVOLVE_DEFAULTS."""
        if isinstance(data, dict) and data.get("recipe") in ("self", "evolve"):
            given = data.get("self_evolution") or {}
            if isinstance(given, dict):
                defaults = EVOLVE_DEFAULTS if data["recipe"] == "evolve" else {}
                data = {**data, "self_evolution": {**defaults, **given}}
        return data

    @model_validator(mode="after")
    def _inputs_present(self) -> "PipelineSpec":
        if self.bootstrap is not None:
            given = [f"data.{k}" for k in ("preference", "prompts") if getattr(self.data, k)]
            given += [f"models.{k}" for k, v in self.models.model_dump().items() if v]
            if given:
                raise ValueError(f"bootstrap makes the data and models; remove {', '.join(given)}")
        else:
            missing = [f"data.{k}" for k in ("preference", "prompts") if not getattr(self.data, k)]
            needed = ("policy",) if self.recipe in ("self", "evolve") else ("policy", "reviser_base", "generator")
            missing += [f"models.{k}" for k in needed if not getattr(self.models, k)]
            if missing:
                raise ValueError(f"without bootstrap the spec needs {', '.join(missing)}")
        names = [c.name for c in self.critics]
        if len(set(names)) != len(names):
            raise ValueError(f"critic names must be unique, got {names}")
        if self.labelling.critic is not None and self.labelling.critic not in names:
            raise ValueError(f"labelling.critic {self.labelling.critic!r} is not one of {names}")
        evo = self.self_evolution
        if evo is not None:
            if self.recipe == "seft":
                raise ValueError("self_evolution is for recipe self or evolve; this spec's recipe is seft")
            if evo.critic is not None and evo.critic not in names:
                raise ValueError(f"self_evolution.critic {evo.critic!r} is not one of {names}")
            if self.recipe == "self" and evo.feedback is None and evo.corpus is None:
                raise ValueError("recipe self learns from feedback: set self_evolution.feedback (a teacher) "
                                 "or self_evolution.corpus (a meta-skill corpus with feedback)")
            if evo.method == "dpo" and evo.dpo is None:
                raise ValueError("self_evolution.method dpo needs self_evolution.dpo (its training)")
            if self.baselines is not None:
                raise ValueError(f"baselines are SEFT's; recipe {self.recipe} has none")
        return self

    @property
    def refines(self) -> bool:
        """Whether the recipe's models refine their own answers (SELF, EVOLVE)."""
        return self.recipe in ("self", "evolve")

    @property
    def refinement_critic(self) -> Critic:
        name = (self.self_evolution and self.self_evolution.critic) or self.critics[0].name
        return next(c for c in self.critics if c.name == name)

    @property
    def labelling_critic(self) -> Critic:
        name = self.labelling.critic or self.critics[0].name
        return next(c for c in self.critics if c.name == name)
