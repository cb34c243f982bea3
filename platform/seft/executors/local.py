"""The local executor: `seft run`. Services run as loopback gRPC servers (`seft serve` in
processes forked from a preloaded fork server: seft.executors.forked), trainings as forked
processes too where they run alone (nproc_per_node 1) and under torchrun where they do not,
artifacts in the run's store.

A stage whose published manifest has the fingerprint of its current parameters and inputs is
skipped, so a run resumes after a crash at the stage that was interrupted."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from seft.errors import SeftError
from seft.executors import forked
from seft.runstate import RUNS, RunState
from seft.spec import PipelineSpec
from seft.stages import Ref, ServiceSpec, SpecView, Stage
from seft.storage import Store, fingerprint, local_path, manifest_digest, open_store, write_atomic
from seft.train import failure, torchrun_command, train_job, training_threads

SERVICE_START_TIMEOUT = 600.0
LOSS = re.compile(r"'loss': '?([0-9.eE+-]+)")  # a Trainer log line


def _die_with_parent() -> None:
    """Trainings get SIGTERM if the executor dies (even by SIGKILL): no orphaned workers."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_env(threads: int = 1) -> dict[str, str]:
    """The environment of a service or training: `threads` torch threads unless OMP_NUM_THREADS
    says otherwise (then that, for every child)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_training(config: Path, nproc_per_node: int, log: Path, threads: int = 1) -> subprocess.Popen | forked.Forked:
    """`seft train --config CONFIG`, its output in `log`, each process on `threads` torch threads.
    One process is forked (no launcher, no imports: two one-step trainings end 2.6x sooner,
    bench/startup.py); several run under torchrun, which sets up their process group."""
    if nproc_per_node == 1:
        return forked.start("seft.train.__main__", ["--config", str(config)], log,
                            forked.single_process_env(child_env(threads)))
    with log.open("w") as handle:
        return subprocess.Popen(torchrun_command(config, nproc_per_node), stdout=handle, stderr=subprocess.STDOUT,
                                env=child_env(threads), preexec_fn=_die_with_parent)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _last_loss(procs: dict) -> str:
    """'name: loss 0.123' for each job whose Trainer log has a loss line yet."""
    out = []
    for name, (_, log) in procs.items():
        losses = LOSS.findall(_tail(log, 40))
        if losses:
            out.append(f"{name}: loss {losses[-1]}")
    return "  ".join(out)


def serve_argv(svc: ServiceSpec, model: str | None, port_file: Path, max_batch: int) -> list[str]:
    """`seft serve`'s arguments for one service."""
    args = ["serve", svc.kind, "--host", "127.0.0.1", "--port", "0",
            "--port-file", str(port_file), "--max-batch", str(max_batch)]
    if model is not None:
        args += ["--model", model]
    if svc.kind == "reviser" and not svc.label_first:
        args.append("--no-labels")
    if svc.critic is not None:
        args += ["--critic", svc.critic.backend]
        model_flag = "--critic-model" if svc.kind == "generator" else "--model"
        args += ["--callable", svc.critic.callable] if svc.critic.callable else [model_flag, svc.critic.model]
    return args


class Context:
    """What a stage sees of the executor: the spec (the fields it declared), its inputs, its
    services, its output directory."""

    def __init__(self, spec: PipelineSpec, store: Store, work: Path, stage: Stage, out: Path, console):
        self.full_spec, self.store, self.work, self.out, self.console = spec, store, work, out, console
        self.spec = SpecView(spec, stage.name, stage.reads)
        self.stage, self.plan = stage.name, stage
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._inputs: dict[str, Path] = {}

    def input(self, stage: str) -> Path:
        """A verified local copy of an earlier stage's artifact (downloaded once, then cached).
        Only a declared input: the skip fingerprint hashes those, so an undeclared read would go stale."""
        if stage not in self.plan.needs:
            raise SeftError(f"stage {self.stage!r} reads the artifact of stage {stage!r}, which it does not "
                            f"declare as an input (its inputs: {', '.join(self.plan.needs) or 'none'})")
        if stage not in self._inputs:
            self._inputs[stage] = self.fetch(stage)
        return self._inputs[stage]

    def fetch(self, stage: str) -> Path:
        return self.store.fetch(stage)

    def path(self, ref: Ref) -> str:
        """Where a Ref is on this machine."""
        if ref.stage is None:
            return str(local_path(ref.path))
        return str((self.out if ref.stage == self.stage else self.input(ref.stage)) / ref.path)

    @contextmanager
    def services(self):
        """Start this stage's services in parallel; yield {name: endpoint}; stop them after."""
        named = self.plan.services
        procs: dict[str, tuple[forked.Forked, Path, Path]] = {}
        run_dir = self.work / ".services"
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name, svc in named.items():
                port_file = run_dir / f"{self.stage}-{name}.port"
                port_file.unlink(missing_ok=True)
                log = self.logs / f"{self.stage}-{name}.log"
                argv = serve_argv(svc, self.path(svc.model) if svc.model else None, port_file,
                                  self.full_spec.services.max_batch)
                procs[name] = (forked.start("seft.cli", argv, log, child_env()), port_file, log)
            endpoints = {name: self._wait_ready(name, *entry) for name, entry in procs.items()}
            yield endpoints
        finally:
            for proc, _, _ in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc, _, _ in procs.values():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _wait_ready(self, name: str, proc: forked.Forked, port_file: Path, log: Path) -> str:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while not port_file.exists():
            if proc.poll() is not None:
                raise SeftError(f"service {name!r} exited with {proc.returncode} while starting; "
                                f"log {log}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise SeftError(f"service {name!r} did not start in {SERVICE_START_TIMEOUT:.0f}s; log {log}")
            time.sleep(0.1)
        endpoint = f"127.0.0.1:{port_file.read_text().strip()}"
        with grpc.insecure_channel(endpoint) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        if status.status != health_pb2.HealthCheckResponse.SERVING:
            raise SeftError(f"service {name!r} at {endpoint} is not SERVING")
        return endpoint

    def run_trainings(self) -> dict:
        """Run this stage's trainings concurrently (after its run()): forked where one process
        trains, under torchrun where several do. Each saves an HF model directory at <out>/<name>.
        Returns their loss curves, for the report."""
        jobs, procs = self.plan.trainings, {}
        threads = training_threads(sum(t.training.nproc_per_node for t in jobs.values())) if jobs else 1
        try:
            for name, t in jobs.items():
                job = train_job(t, self.full_spec.seed, self.path(t.model), str(self.out / t.data),
                                str(self.out / name),  # checkpoints outlive a failed run: `seft run` resumes
                                checkpoint_dir=str(self.work / "checkpoints" / self.stage / name))
                config = self.out / f"{name}.train.yaml"
                config.write_text(yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False))
                log = self.logs / f"{self.stage}-{name}-train.log"
                procs[name] = (start_training(config, t.training.nproc_per_node, log, threads), log)
            with self.console.status(f"  training {', '.join(jobs)}") as status:
                for name, (proc, log) in procs.items():
                    while proc.poll() is None:
                        status.update(f"  training {', '.join(jobs)} {_last_loss(procs)}")
                        time.sleep(1)
                    if proc.returncode != 0:
                        why = failure(log.read_text(errors="replace")) or _tail(log)
                        raise SeftError(f"training {name!r} failed (exit {proc.returncode}): {why}\n(log {log})")
            done = {name: json.loads((self.out / name / "train_summary.json").read_text()) for name in jobs}
            kept = ("losses", "logging_steps", "steps", "train_loss", "threads", "label_accuracy", "label_choices",
                    "warnings")
            return {name: {k: d[k] for k in kept if k in d} for name, d in done.items()}
        finally:
            for proc, _ in procs.values():
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()

    @contextmanager
    def progress(self, description: str, total: int):
        """A progress bar over `total` items; yields the callback that advances it."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn(f"  {description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


def execute(st: Stage, context: type[Context], spec: PipelineSpec, store: Store, work: Path, console,
            digests: dict[str, str], params: dict) -> tuple[dict, dict]:
    """Run one stage and publish its artifact: all of it, or (on any failure) nothing visible.
    digests: the content digests of its inputs; params: st.params(spec), computed once by the caller
    (it hashes the files the stage names). Returns (manifest, summary)."""
    t0 = time.time()
    staging = store.staging(st.name)
    try:
        ctx = context(spec, store, work, st, staging, console)
        summary = st.run(ctx) or {}
        trainings = ctx.run_trainings()
        if trainings:  # their loss curves (for the report), label fit and warnings
            summary["trainings"] = trainings
            warnings = summary.get("warnings", []) + [
                f"training {name!r}: {w}" for name, t in trainings.items() for w in t.get("warnings", [])]
            if warnings:
                summary["warnings"] = warnings
        t1 = time.time()
        manifest = store.publish(staging, st.name, {
            "stage": st.name, "fingerprint": fingerprint(st.name, params, {n: digests[n] for n in st.needs}),
            "params": params, "inputs": {n: {"uri": store.uri(n), "digest": digests[n]} for n in st.needs},
            "summary": summary, "started": t0, "finished": t1, "seconds": t1 - t0})
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest, summary


def run_pipeline(spec: PipelineSpec, stages: list[Stage], console, workdir: Path = RUNS) -> dict:
    """Run the stages in order; run.json, logs and report.json go to <workdir>/<name>/, artifacts
    to the spec's store (by default the same directory)."""
    work = workdir / spec.name
    work.mkdir(parents=True, exist_ok=True)
    store = open_store(spec.store, spec.name, scratch=work / ".staging")
    shutil.rmtree(work / ".staging", ignore_errors=True)
    store.clean()
    state = RunState(work / "run.json", spec.name)
    for st in stages:
        if state.data["stages"].get(st.name, {}).get("state") != "done":
            state.set(st.name, state="pending")
    digests: dict[str, str] = {}
    summaries: dict[str, dict] = {}
    started = time.time()
    for st in stages:
        params = st.params(spec)
        inputs = {name: digests[name] for name in st.needs}
        fp = fingerprint(st.name, params, inputs)
        manifest = store.manifest(st.name)
        if manifest and manifest.get("fingerprint") == fp:
            digests[st.name], summaries[st.name] = manifest_digest(manifest), manifest.get("summary", {})
            state.set(st.name, state="done", skipped=True, uri=store.uri(st.name))
            console.print(f"[dim]- {st.name}: up to date, skipped[/dim]")
            continue
        console.print(f"[bold]> {st.name}[/bold]")
        t0 = time.time()
        state.set(st.name, state="running", started=t0, finished=None, seconds=None, error=None, skipped=False)
        try:
            manifest, summary = execute(st, Context, spec, store, work, console, digests, params)
            t1 = manifest["finished"]
        except BaseException as exc:
            reason = str(exc) or type(exc).__name__
            state.set(st.name, state="failed", finished=time.time(), seconds=time.time() - t0, error=reason)
            if isinstance(exc, (SeftError, KeyboardInterrupt)):
                raise
            raise SeftError(f"stage {st.name} failed: {type(exc).__name__}: {reason}") from exc
        digests[st.name], summaries[st.name] = manifest_digest(manifest), summary
        state.set(st.name, state="done", finished=t1, seconds=t1 - t0, uri=store.uri(st.name))
        console.print(f"[green]  {st.name} done in {t1 - t0:.1f}s[/green]")
        for warning in summary.get("warnings", []):
            console.print(f"[yellow]  warning: {warning}[/yellow]")
    report = {"name": spec.name, "run_dir": str(work), "store": store.uri(), "recipe": spec.recipe,
              "seed": spec.seed, "wall_seconds": time.time() - started, "stages": state.data["stages"],
              "summaries": summaries, "metrics": summaries.get("evaluate", {}).get("metrics", {})}
    text = json.dumps(report, indent=2)
    write_atomic(work / "report.json", text)
    store.put_text("report.json", text)
    return report
