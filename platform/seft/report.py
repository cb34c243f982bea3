"""Rich tables for the end of `seft run` and for `seft status`."""

from __future__ import annotations

import os
import time

from rich.table import Table

from seft.metrics import LABELS


def _num(x, fmt: str = "{:+.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def reviser_table(metrics: dict, critic: str) -> Table:
    revisers = metrics["reviser"]
    table = Table(title=f"Revisers on held-out originals, by original rank (critic: {critic})",
                  caption="benefit: mean r(revised) - r(original); improved: share of revised responses whose "
                          "reward rose; major / minor / no: the adaptive reviser's labels")
    table.add_column("rank", justify="right")
    table.add_column("n", justify="right")
    short = {"preliminary": "prelim", "adaptive": "adaptive"}
    for name in revisers:
        table.add_column(f"{short.get(name, name)}\nbenefit", justify="right")
        table.add_column(f"{short.get(name, name)}\nimproved", justify="right")
    for lb in LABELS:
        table.add_column(lb, justify="right")
    adaptive = revisers["adaptive"][critic]
    for rank in adaptive:
        cells = [rank, str(adaptive[rank]["n"])]
        for name in revisers:
            s = revisers[name][critic][rank]
            cells += [_num(s["mean_benefit"]), _num(s["improvement_rate"], "{:.0%}")]
        cells += [f"{adaptive[rank]['labels'].get(lb, 0):.0%}" for lb in LABELS]
        table.add_row(*cells, end_section=rank == "6")
    return table


def policy_table(metrics: dict) -> Table:
    policy = metrics["policy"]
    critics = list(next(iter(policy.values())))
    table = Table(title="Policy: mean critic reward on held-out prompts")
    table.add_column("policy")
    for c in critics:
        table.add_column(c, justify="right")
    for name, scores in policy.items():
        table.add_row({"initial": "initial", "internal": "after internal", "external": "after external"}[name],
                      *[f"{scores[c]:.3f}" for c in critics])
    return table


def _short(uri: str | None) -> str | None:
    """file:// URIs under the working directory as relative paths."""
    if uri and uri.startswith("file://"):
        rel = os.path.relpath(uri[len("file://"):])
        return rel if not rel.startswith("..") else uri
    return uri


def pipeline_table(pipeline: dict) -> Table:
    """A SeftPipeline's status, stage by stage, as the operator records it."""
    status = pipeline.get("status") or {}
    table = Table(title=f"SeftPipeline {pipeline['metadata']['name']}: {status.get('phase', 'Pending')}")
    for col in ("stage", "phase", "attempt", "started", "finished", "artifact / reason"):
        table.add_column(col)
    for name, s in (status.get("stages") or {}).items():
        colour = {"Succeeded": "green", "Failed": "red"}.get(s.get("phase"), "yellow")
        table.add_row(name, f"[{colour}]{s.get('phase', '')}[/{colour}]", str(s.get("attempt", "")),
                      s.get("startedAt", "-"), s.get("finishedAt", "-"), s.get("reason") or s.get("artifact") or "-")
    return table


def stages_table(run: dict) -> Table:
    table = Table(title=f"Run {run.get('name', '')}")
    for col in ("stage", "state", "started", "seconds", "output"):
        table.add_column(col)
    for name, s in run.get("stages", {}).items():
        state = s.get("state", "pending")
        if s.get("skipped") and state == "done":
            state = "done (skipped)"
        started = time.strftime("%H:%M:%S", time.localtime(s["started"])) if s.get("started") else "-"
        seconds = f"{s['seconds']:.1f}" if s.get("seconds") is not None else "-"
        colour = {"done": "green", "failed": "red", "running": "yellow", "interrupted": "red"}.get(state.split()[0], "")
        table.add_row(name, f"[{colour}]{state}[/{colour}]" if colour else state, started, seconds,
                      _short(s.get("uri")) or s.get("error") or "-")
    return table
