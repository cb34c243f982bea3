"""One stage in a Kubernetes pod, for the operator: `seft stage NAME --spec FILE`.

The operator has already made the stage's services (Deployments; their endpoints come in
SEFT_SERVICE_<NAME>) and runs the stage's trainings afterwards as PyTorchJobs, which publish
<stage>/<training> themselves. So here ctx.services() only hands out endpoints, the trainings are
not run, and ctx.input() of a stage that trained shows its trained models where `seft run` puts
them: inside the stage's directory."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from seft.errors import SeftError
from seft.executors.local import Context, execute
from seft.recipes import stages_for
from seft.spec import PipelineSpec
from seft.stages import service_env
from seft.storage import manifest_digest, open_store


class PodContext(Context):
    @contextmanager
    def services(self):
        missing = [service_env(n) for n in self.plan.services if not os.environ.get(service_env(n))]
        if missing:
            raise SeftError(f"stage {self.stage}: no endpoint for its services: set {', '.join(missing)}")
        yield {name: os.environ[service_env(name)] for name in self.plan.services}

    def run_trainings(self) -> dict:
        return {}  # the operator runs self.plan.trainings as training jobs once this stage's Job is done

    def fetch(self, stage: str) -> Path:
        base = self.store.fetch(stage)
        trained = next((s.trainings for s in stages_for(self.full_spec) if s.name == stage), {})
        if not trained:
            return base
        view = self.work / ".inputs" / stage  # the stage with its models in it, as a local run has them
        view.mkdir(parents=True, exist_ok=True)
        for entry in base.iterdir():
            _link(view / entry.name, entry)
        for job in trained:
            _link(view / job, self.store.fetch(f"{stage}/{job}"))
        return view


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def run_stage(spec: PipelineSpec, name: str, console, work: Path) -> dict:
    """Run stage `name` and publish its artifact; its inputs must be published already."""
    by_name = {s.name: s for s in stages_for(spec)}
    if name not in by_name:
        raise SeftError(f"stage {name!r}: not a stage of recipe {spec.recipe!r} ({', '.join(by_name)})")
    st = by_name[name]
    work.mkdir(parents=True, exist_ok=True)
    store = open_store(spec.store, spec.name, scratch=work / ".staging")
    digests = {}
    for dep in st.needs:
        manifest = store.manifest(dep)
        if manifest is None:
            raise SeftError(f"stage {name}: its input {store.uri(dep)} is not published")
        digests[dep] = manifest_digest(manifest)
    manifest, summary = execute(st, PodContext, spec, store, work, console, digests, st.params(spec))
    console.print(f"[green]{name} published to {store.uri(name)} in {manifest['seconds']:.1f}s[/green]")
    return summary
