"""What the operator runs for a pipeline, from the same stage declarations `seft run` uses:
per stage, its services (as StatefulSets, shared by stages that need the same model), its data
work (a Job) and its trainings. Locations are store URIs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from seft.spec import PipelineSpec
from seft.stages import Ref, ServiceSpec, Stage


def uri(spec: PipelineSpec, ref: Ref) -> str:
    """A Ref as a store URI: a path in a stage's artifact (artifacts live under the pipeline's
    name in the store, as with `seft run`), or the spec's own location."""
    if ref.stage is None:
        return ref.path
    return "/".join(p for p in (spec.store.uri.rstrip("/"), spec.name, ref.stage, ref.path) if p)


def checkpoints_uri(spec: PipelineSpec, stage: str, job: str) -> str:
    """Where a training's checkpoints outlive its pod (beside the artifacts, not in one)."""
    return "/".join([spec.store.uri.rstrip("/"), spec.name, "checkpoints", stage, job])


@dataclass(frozen=True)
class Service:
    """One StatefulSet: a service kind serving one model (or critic)."""

    id: str          # the StatefulSet's name suffix: kind + a digest of what it serves
    kind: str
    model_uri: str | None
    label_first: bool
    critic: object | None


def service(spec: PipelineSpec, svc: ServiceSpec) -> Service:
    model = uri(spec, svc.model) if svc.model else (svc.critic.model if svc.critic else None)
    identity = json.dumps([svc.kind, model, svc.label_first, svc.critic.model_dump() if svc.critic else None])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return Service(f"{svc.kind}-{digest}", svc.kind, model, svc.label_first, svc.critic)


def services(spec: PipelineSpec, stage: Stage) -> dict[str, Service]:
    """The stage's services by the name the stage uses for them."""
    return {name: service(spec, svc) for name, svc in stage.services.items()}
