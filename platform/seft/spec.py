"""The pipeline spec: one pydantic model, loaded from YAML by `seft run` and used as the
SeftPipeline custom resource's spec on Kubernetes. Defaults are the SEFT paper's (Table 5)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from seft.recipes.seft import Baselines, check_baselines
from seft.recipes.self_evolution import SelfEvolution, check_self_evolution, with_recipe_defaults
from seft.settings import Model, Sampling, Training

LabelName = Literal["major", "minor", "no"]
# Defaults used in more than one place (spec fields, `seft serve` / `seft revise` flags, the services).
SERVICE_MAX_BATCH = 256  # the most items a service takes in one call
SERVICE_MAX_NEW_TOKENS = 4096  # the largest max_new_tokens a service accepts
SECRETISH = re.compile(r"secret|password|token|access_?key|credential", re.IGNORECASE)


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
    preference: str | None = Field(None, description="ranked, scored or pairwise (TRL) preference data: "
                                   "JSONL, Parquet or a save_to_disk directory (seft.preference)")
    prompts: str | None = Field(None, description="unlabelled prompts for evolution (same file kinds)")
    test_size: int = Field(200, ge=1, description="preference prompts held out for evaluation")
    warmup_fraction: float = Field(0.3, gt=0, lt=1, description="warm-up : adaptive split = 3 : 7")
    original_ranks: list[int] | None = Field(None, description="ranks an original is drawn from "
                                             "(0 is the best response); default: every rank but 0")
    originals_per_prompt: int = Field(1, ge=1, description="warm-up and adaptive samples per training prompt, "
                                      "each a different original (as many as its allowed ranks at most)")

    @field_validator("original_ranks")
    @classmethod
    def _ranks(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(r < 0 for r in v) or len(set(v)) != len(v)):
            raise ValueError(f"must be distinct ranks of at least 0, got {v}")
        return v


class Ranking(Model):
    """Builds the preference data from prompts alone (the rank stage, instead of
    `data.preference`): the external generator, and the initial policy when `policy` > 0, sample
    answers to each prompt; the critic scores them; their order by score is their rank (ties keep
    the sampling order). A prompt's metadata reaches the critic (e.g. a verifiable task's answer)."""

    prompts: str = Field(description="the prompts to answer and rank: JSONL, Parquet or a save_to_disk "
                                     "directory of `prompt` (seft.preference)")
    generator: int = Field(7, ge=0, le=64, description="answers per prompt from the external generator")
    policy: int = Field(0, ge=0, le=64, description="answers per prompt from the initial policy")
    sampling: Sampling = Sampling(temperature=1.0)
    critic: str | None = Field(None, description="name of the critic that ranks; default the first")
    drop_tied: bool = Field(False, description="leave out prompts whose answers all scored the same: they "
                            "carry no preference (with a right/wrong critic: all right, or all wrong)")

    @model_validator(mode="after")
    def _two_answers(self) -> "Ranking":
        if self.generator + self.policy < 2:
            raise ValueError(f"ranking needs at least two answers per prompt, got generator {self.generator} "
                             f"+ policy {self.policy}")
        return self


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
    sampling: Sampling = Field(Sampling(temperature=0.0),
                               description="how the policies answer the held-out prompts (revisers: `revision`)")
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
    """A container's requests, and its limits: the same (pods are Guaranteed) unless cpu_limit
    lets it burst above its CPU request, as on small CPU clusters."""

    cpu: str = Field("2", pattern=QUANTITY)
    memory: str = Field("8Gi", pattern=QUANTITY)
    gpus: int = Field(0, ge=0, description="nvidia.com/gpu")
    cpu_limit: str | None = Field(None, pattern=QUANTITY, description="default: cpu")


class Replicas(Model):
    """Pods per service kind; a stage spreads its calls over a service's pods."""

    generator: int = Field(1, ge=1, le=64)
    reviser: int = Field(1, ge=1, le=64)
    critic: int = Field(1, ge=1, le=64)
    labeller: int = Field(1, ge=1, le=64)


class Cluster(Model):
    """How the operator runs the pipeline on Kubernetes; `seft run` ignores it. The images and the
    store Secret are the operator's to choose (its configuration lists what is allowed): a spec
    may name one of those, or leave them to the operator's defaults."""

    image: str | None = Field(None, description="the platform image (Dockerfile); default: the operator's")
    vllm_image: str | None = Field(None, description="the vLLM sidecar of generators and revisers; "
                                                     "default: the operator's")
    store_secret: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
                                     description="must be the operator's store Secret when given")
    serving: Literal["vllm", "transformers"] = Field(
        "vllm", description="generators and revisers: a vLLM sidecar (GPUs), or the in-process "
                            "transformers backend (CPU clusters, small models)")
    trainer: Literal["trainjob", "pytorchjob", "job"] = Field(
        "trainjob", description="trainings as Kubeflow Trainer v2 TrainJobs, Training Operator v1 "
                                "PyTorchJobs, or batch Jobs running torchrun on one node")
    trainjob_runtime: str = Field("torch-distributed", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
                                  description="trainer trainjob: the ClusterTrainingRuntime")
    retries: int = Field(2, ge=0, le=10, description="a failed Job or training is re-created up to this often")
    replicas: Replicas = Replicas()
    vllm: Resources = Resources(cpu="8", memory="64Gi", gpus=1)
    service: Resources = Resources(cpu="2", memory="8Gi")
    stage: Resources = Resources(cpu="2", memory="8Gi")
    training_nodes: int = Field(1, ge=1, description="nodes per training (trainer job: 1)")
    training: Resources = Resources(cpu="32", memory="256Gi", gpus=8)

    @model_validator(mode="after")
    def _one_node_jobs(self) -> "Cluster":
        if self.trainer == "job" and self.training_nodes != 1:
            raise ValueError(f"training_nodes: {self.training_nodes} needs a training operator; "
                             "trainer 'job' runs on one node (use trainjob or pytorchjob)")
        return self


def _paper_policy_training() -> Training:
    return Training(learning_rate=5e-7, lr_scheduler="linear")


class PipelineSpec(Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    recipe: Literal["seft", "self", "evolve"] = "seft"
    seed: int = Field(0, ge=0)
    store: StoreConfig = StoreConfig()
    bootstrap: Bootstrap | None = None
    data: Data = Data()
    ranking: Ranking | None = Field(None, description="build the preference data from prompts and a critic")
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
        return with_recipe_defaults(data)

    @model_validator(mode="after")
    def _inputs_present(self) -> "PipelineSpec":
        if self.bootstrap is not None:
            given = [f"data.{k}" for k in ("preference", "prompts") if getattr(self.data, k)]
            given += [f"models.{k}" for k, v in self.models.model_dump().items() if v]
            given += ["ranking"] if self.ranking else []
            if given:
                raise ValueError(f"bootstrap makes the data and models; remove {', '.join(given)}")
        else:
            if self.ranking is not None and self.data.preference:
                raise ValueError("ranking builds the preference data: remove data.preference, or ranking")
            missing = ["data.prompts"] if not self.data.prompts else []
            missing += ["data.preference (or ranking)"] if not (self.data.preference or self.ranking) else []
            needed = ("policy",) if self.recipe in ("self", "evolve") else ("policy", "reviser_base", "generator")
            if self.ranking is not None and self.ranking.generator:
                needed = tuple(dict.fromkeys((*needed, "generator")))
            missing += [f"models.{k}" for k in needed if not getattr(self.models, k)]
            if missing:
                raise ValueError(f"without bootstrap the spec needs {', '.join(missing)}")
        names = [c.name for c in self.critics]
        if len(set(names)) != len(names):
            raise ValueError(f"critic names must be unique, got {names}")
        for field, name in (("labelling.critic", self.labelling.critic),
                            ("ranking.critic", self.ranking.critic if self.ranking else None)):
            if name is not None and name not in names:
                raise ValueError(f"{field} {name!r} is not one of {names}")
        check_baselines(self)
        check_self_evolution(self)
        return self

    @property
    def refines(self) -> bool:
        """Whether the recipe's models refine their own answers (SELF, EVOLVE)."""
        return self.recipe in ("self", "evolve")

    @property
    def refinement_critic(self) -> Critic:
        return self.critic(self.self_evolution and self.self_evolution.critic)

    @property
    def labelling_critic(self) -> Critic:
        return self.critic(self.labelling.critic)

    def critic(self, name: str | None) -> Critic:
        """The critic called `name`; None: the first."""
        return next(c for c in self.critics if c.name == (name or self.critics[0].name))
