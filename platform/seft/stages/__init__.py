"""Stages: each module has a config slice (params), declared inputs and one run(ctx).

A stage reads earlier artifacts through ctx.input(), reaches services only through the gRPC
clients (ctx.services() gives endpoints), trains through ctx.train(), and writes its outputs
under ctx.out. The executor publishes ctx.out as the stage's artifact with its manifest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seft.spec import Critic, PipelineSpec


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]
    params: Callable[["PipelineSpec"], dict]
    run: Callable[..., dict]  # run(ctx) -> summary (lands in the manifest and the report)


@dataclass(frozen=True)
class ServiceSpec:
    """A service a stage needs; the executor decides how it runs (a loopback subprocess locally,
    a Deployment on Kubernetes) and gives the stage its endpoint."""

    kind: str  # generator | reviser | critic | labeller
    model: str | None = None
    label_first: bool = True  # reviser: the adaptive (label-first) format
    critic: "Critic | None" = None  # critic / labeller backend
