"""Stages. A stage module declares one stage (`stage(spec) -> Stage`) and defines its `run(ctx)`.

The declaration says everything an executor needs without running the stage's code: the spec
fields run() reads, the earlier stages whose artifacts it reads, the services it calls and the
trainings that follow it. From those come the stage's parameters (what its skip fingerprint
hashes) and its inputs, so a declaration cannot drift from the fingerprint. run() reads artifacts
with ctx.input(), reaches services only through the gRPC clients (ctx.services() gives their
endpoints) and writes files under ctx.out; the executor then runs the declared trainings (each
makes the HF model directory <stage>/<name>) and publishes ctx.out with its manifest. The
Kubernetes operator reads the same declarations to create Deployments and training jobs.
docs/architecture.md has the whole picture."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from seft.errors import SeftError

if TYPE_CHECKING:
    from seft.settings import Training
    from seft.spec import Critic, PipelineSpec


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
    critic: "Critic | None" = None  # critic / labeller backend; a generator's, for self-refinement


@dataclass(frozen=True)
class TrainSpec:
    """A `seft train` job that follows a stage's run(): fine-tune `model` on `data` (a file in the
    stage's own output); the result is the HF model directory <stage>/<name>."""

    model: Ref
    data: str
    training: "Training"
    add_tokens: tuple[str, ...] = ()  # e.g. the reviser's labels, as single special tokens
    method: str = "sft"  # sft on {prompt, completion}; dpo / orpo on {prompt, chosen, rejected}
    beta: float = 0.1  # dpo's beta, orpo's lambda


@dataclass(frozen=True)
class Stage:
    """One stage, declared. `reads`: dotted spec fields run() reads (ctx.spec refuses others);
    `inputs`: earlier stages whose artifacts run() reads, besides those its Refs name; `files`:
    files named in the spec whose content is a parameter."""

    name: str
    run: Callable[..., dict]  # run(ctx) -> summary (lands in the manifest and the report)
    reads: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    trainings: dict[str, TrainSpec] = field(default_factory=dict)

    @property
    def needs(self) -> tuple[str, ...]:
        """Every stage whose artifact this one reads: the declared inputs and the stages its
        services' and trainings' models come from (never itself)."""
        refs = [s.model for s in self.services.values()] + [t.model for t in self.trainings.values()]
        implied = [r.stage for r in refs if r is not None and r.stage not in (None, self.name)]
        return tuple(dict.fromkeys([*self.inputs, *implied]))

    def params(self, spec: "PipelineSpec") -> dict:
        """What the stage's output depends on besides its inputs' content."""
        from seft.storage import local_path, sha256_path

        return plain({"seed": spec.seed, "reads": {f: setting(spec, f) for f in self.reads},
                      "files": {f: sha256_path(local_path(f)) for f in self.files},
                      "services": self.services, "trainings": self.trainings})


def plain(value: Any) -> Any:
    """JSON-ready: dataclasses and pydantic models as dicts, tuples as lists."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def setting(spec: Any, dotted: str) -> Any:
    """spec.a.b for 'a.b'."""
    value = spec
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


# What any stage may read without declaring it: none of it changes a stage's output.
UNDECLARED_OK = ("name", "seed", "services", "store", "cluster")  # the seed is in every fingerprint


class SpecView:
    """The spec as a stage's run() sees it: a read of a field the stage did not declare fails,
    so every setting that shapes the output is in its fingerprint."""

    def __init__(self, spec: Any, stage: str, reads: tuple[str, ...], path: str = ""):
        self._spec, self._stage, self._reads, self._path = spec, stage, reads, path

    def __getattr__(self, attr: str) -> Any:
        dotted = f"{self._path}{attr}"
        value = getattr(self._spec, attr)
        if dotted in UNDECLARED_OK or any(dotted == r or dotted.startswith(r + ".") for r in self._reads):
            return value
        if any(r.startswith(dotted + ".") for r in self._reads):  # on the way to a declared field
            return SpecView(value, self._stage, self._reads, dotted + ".")
        raise SeftError(f"stage {self._stage!r} reads spec field {dotted!r} without declaring it "
                        f"(its reads: {', '.join(self._reads) or 'none'})")


def service_env(name: str) -> str:
    """The environment variable that gives a stage pod the endpoint of its service `name`."""
    return "SEFT_SERVICE_" + name.upper().replace("-", "_")


def data_makers(spec: "PipelineSpec") -> list:
    """The stage modules that make prepare's inputs: bootstrap (a demo task and models), or rank
    (preference data from prompts alone), or none (the spec names the files)."""
    from seft.stages import bootstrap, rank

    return [bootstrap] if spec.bootstrap is not None else [rank] if spec.ranking is not None else []


def model_ref(spec: "PipelineSpec", role: str) -> Ref:
    """policy | reviser_base | generator: made by bootstrap when it runs, else named in the spec."""
    if spec.bootstrap is not None:
        return Ref("bootstrap", {"reviser_base": "generator"}.get(role, role))
    return Ref(None, getattr(spec.models, role))
