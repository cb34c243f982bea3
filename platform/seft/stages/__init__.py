"""Stages: each module has a config slice (params), declared inputs, declared services and
trainings, and one run(ctx).

A stage reads earlier artifacts through ctx.input(), reaches its declared services only through
the gRPC clients (ctx.services() gives their endpoints), runs its declared trainings with
ctx.train() (last), and writes its outputs under ctx.out. The executor publishes ctx.out as the
stage's artifact with its manifest. Declaring services and trainings up front is what lets the
Kubernetes operator create Deployments and PyTorchJobs for a stage without running its code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seft.spec import Critic, PipelineSpec, Training


@dataclass(frozen=True)
class Ref:
    """A model or file: `path` inside stage `stage`'s artifact, or, with stage None, a location
    given in the spec (a local path, or a store URI on a cluster)."""

    stage: str | None
    path: str


@dataclass(frozen=True)
class ServiceSpec:
    """A service a stage needs; the executor decides how it runs (a loopback subprocess locally,
    a Deployment on Kubernetes) and gives the stage its endpoint."""

    kind: str  # generator | reviser | critic | labeller
    model: Ref | None = None
    label_first: bool = True  # reviser: the adaptive (label-first) format
    critic: "Critic | None" = None  # critic / labeller backend


@dataclass(frozen=True)
class TrainSpec:
    """A `seft train` job of a stage: fine-tune `model` on `data` (a file in the stage's own
    output); the result is the HF model directory <stage>/<name>."""

    model: Ref
    data: str
    training: "Training"
    add_tokens: tuple[str, ...] = ()  # e.g. the reviser's labels, as single special tokens
    method: str = "sft"  # sft on {prompt, completion}; dpo / orpo on {prompt, chosen, rejected}
    beta: float = 0.1  # dpo's beta, orpo's lambda

    def options(self) -> dict:
        """The TrainJob fields that come from the stage rather than from its Training."""
        return {"add_tokens": list(self.add_tokens), "method": self.method, "beta": self.beta}


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]
    params: Callable[["PipelineSpec"], dict]
    run: Callable[..., dict]  # run(ctx) -> summary (lands in the manifest and the report)
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    trainings: dict[str, TrainSpec] = field(default_factory=dict)


def service_env(name: str) -> str:
    """The environment variable that gives a stage pod the endpoint of its service `name`."""
    return "SEFT_SERVICE_" + name.upper().replace("-", "_")


def model_ref(spec: "PipelineSpec", role: str) -> Ref:
    """policy | reviser_base | generator: made by bootstrap when it runs, else named in the spec."""
    if spec.bootstrap is not None:
        return Ref("bootstrap", {"reviser_base": "generator"}.get(role, role))
    return Ref(None, getattr(spec.models, role))


def from_module(mod, spec: "PipelineSpec") -> Stage:
    """The Stage of a stage module (NAME, inputs, params, run, services, trainings) for a spec."""
    return Stage(mod.NAME, mod.inputs(spec), mod.params, mod.run, mod.services(spec), mod.trainings(spec))
