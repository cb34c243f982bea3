"""Rich tables for the end of `seft run` and for `seft status`; report.md with its plots for
`seft report`, and `seft compare`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rich.table import Table

from seft.metrics import LABELS
from seft.storage import is_local, local_path


def _num(x, fmt: str = "{:+.3f}") -> str:
    return "-" if x is None else fmt.format(x)


SHORT = {"preliminary": "prelim"}


def reviser_table(metrics: dict, critic: str) -> Table:
    """One column per reviser (benefit and improvement rate), narrow enough for 80 columns with
    the baselines too; report.md has them in full, with the counts."""
    revisers = metrics["reviser"]
    table = Table(title=f"Revisers on held-out originals, by original rank (critic: {critic})",
                  caption="benefit: mean r(revised) - r(original); rate: improvement rate, the share of revised "
                          "responses whose reward rose; labels: the adaptive reviser's major / minor / no shares (%)")
    table.add_column("rank", justify="right", no_wrap=True)
    for name in revisers:
        table.add_column(f"{SHORT.get(name, name)}\nbenefit rate", justify="right", no_wrap=True)
    table.add_column("adaptive\nlabels", justify="right", no_wrap=True)
    adaptive = revisers["adaptive"][critic]
    for rank in adaptive:
        cells = [rank]
        for name in revisers:
            s = revisers[name][critic][rank]
            cells.append(f"{_num(s['mean_benefit'])} {_num(s['improvement_rate'], '{:.0%}'):>4}")
        cells.append("/".join(f"{adaptive[rank]['labels'].get(lb, 0) * 100:.0f}" for lb in LABELS))
        table.add_row(*cells, end_section=rank == "6")
    return table


POLICY_TITLES = {"initial": "initial", "sft_chosen": "SFT on chosen", "dpo": "DPO", "orpo": "ORPO",
                 "sft_generator": "SFT on the generator's answers", "external_only": "external evolution only",
                 "internal": "after internal", "external": "after external (SEFT)"}


def policy_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 2: each policy's mean reward and win rate against the held-out
    references, under each critic."""
    policy, versus, judged = metrics["policy"], metrics.get("policy_vs_reference") or {}, metrics.get("judge")
    critics = list(next(iter(policy.values())))
    header = ["policy"] + [f"{c} {m}" for c in critics for m in ("reward", "vs reference")]
    rows = [[POLICY_TITLES.get(name, name)] +
            [cell for c in critics for cell in (f"{scores[c]:.3f}",
                                                 _num(versus.get(name, {}).get(c, {}).get("win_rate"), "{:.1%}"))]
            for name, scores in policy.items()]
    if judged:  # the LLM judge's mean 1-10 rating, and how many judgements had no usable rating
        header.append("judge rating")
        for name, row in zip(policy, rows):
            j = judged.get(name) or {"n": 0, "rated": 0}
            unrated = j["n"] - j["rated"]  # malformed judgements and failed calls
            row.append(_num(j.get("mean_rating"), "{:.2f}") + (f" ({unrated} unrated)" if unrated else ""))
    return header, rows


def _table(title: str, caption: str, header: list[str], rows: list[list[str]]) -> Table:
    """A terminal table: the first column names the row, the rest are right-aligned numbers."""
    table = Table(title=title, caption=caption)
    table.add_column(header[0])
    for col in header[1:]:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def policy_table(metrics: dict) -> Table:
    return _table("Policy on held-out prompts: mean critic reward, and win rate against the references",
                  "vs reference: share of prompts where the answer scored above the reference (ties half)",
                  *policy_rows(metrics))


def refinement_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """SELF / EVOLVE: each model's mean critic reward on the held-out prompts, answering directly
    and after refining its own answer, and how often refining helped or hurt."""
    header = ["model", "direct", "self-refined", "refining helped", "refining hurt", "direct vs reference"]
    versus = metrics.get("policy_vs_reference") or {}
    rows = [[name, f"{m['direct']:.3f}", f"{m['refined']:.3f}", f"{m['improved']:.1%}", f"{m['worsened']:.1%}",
             _num(versus.get(name, {}).get(metrics["critic"], {}).get("win_rate"), "{:.1%}")]
            for name, m in metrics["refinement"].items()]
    return header, rows


def refinement_table(metrics: dict) -> Table:
    return _table(f"Direct and self-refined answers to the held-out prompts ({metrics['critic']})",
                  "self-refined: the model refines its own greedy answer, with no critic in the loop",
                  *refinement_rows(metrics))


def claim_line(report: dict) -> str | None:
    """The paper's central claim on this run: the adaptive reviser's improvement rate on rank 0-1
    originals against the best baseline's."""
    headline = (report.get("summaries") or {}).get("evaluate", {}).get("headline") or {}
    rates = headline.get("improvement_rate_rank_0_1")
    if not rates or "adaptive" not in rates or len(rates) < 2:
        return None
    baselines = {n: r for n, r in rates.items() if n != "adaptive"}
    best = max(baselines, key=lambda n: -1 if baselines[n] is None else baselines[n])
    return (f"Improvement rate on rank 0-1 originals ({headline['critic']}): adaptive "
            f"{_num(rates['adaptive'], '{:.1%}')}, best baseline {best} {_num(baselines[best], '{:.1%}')} "
            f"(" + ", ".join(f"{n} {_num(r, '{:.1%}')}" for n, r in baselines.items()) + ").")


def warnings(report: dict) -> list[str]:
    """Every stage's warnings (a summary's "warnings"), as 'stage: text'."""
    return [f"{stage}: {w}" for stage, s in (report.get("summaries") or {}).items() for w in s.get("warnings", [])]


def print_results(console, report: dict, critic: str) -> None:
    """What `seft run` prints at the end: the stages, the warnings, then the recipe's results."""
    console.print(stages_table(report))
    for warning in warnings(report):
        console.print(f"[yellow]warning: {warning}[/yellow]")
    metrics = report.get("metrics")
    if metrics and "refinement" in metrics:  # SELF, EVOLVE
        console.print(refinement_table(metrics))
    elif metrics:
        console.print(reviser_table(metrics, critic))
        claim = claim_line(report)
        if claim:
            console.print(claim, soft_wrap=True)
        console.print(policy_table(metrics))


def _short(uri: str | None) -> str | None:
    """file:// URIs under the working directory as relative paths."""
    if uri and is_local(uri):
        rel = os.path.relpath(local_path(uri))
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


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(report: dict, plots: dict[str, str]) -> str:
    """report.md: the paper's tables (revisers by original rank under each critic, label shares,
    policy reward per stage) with the plots beside them. plots: {name: relative path}."""
    metrics = report.get("metrics") or {}
    out = [f"# Run {report['name']}", "",
           f"Recipe `{report.get('recipe')}`, seed {report.get('seed')}, store `{report.get('store')}`, "
           f"{report.get('wall_seconds', 0):.0f} s.", ""]
    if warnings(report):
        out += ["## Warnings", "", *[f"- {w}" for w in warnings(report)], ""]
    revisers = metrics.get("reviser") or {}
    critics = list(next(iter(revisers.values()))) if revisers else []
    for critic in critics:
        out += [f"## Revisers by original rank ({critic})", "",
                "Benefit: mean reward(revised) - reward(original); improved: share of revised responses whose "
                "reward rose.", ""]
        ranks = list(next(iter(revisers.values()))[critic])
        header = ["rank", "n"] + [f"{n} {m}" for n in revisers for m in ("benefit", "improved")]
        rows = [[r, str(next(iter(revisers.values()))[critic][r]["n"])] +
                [c for n in revisers for c in (_num(revisers[n][critic][r]["mean_benefit"]),
                                              _num(revisers[n][critic][r]["improvement_rate"], "{:.0%}"))]
                for r in ranks]
        out += [_md_table(header, rows), ""]
        for name in (f"reviser_ranks_{critic}", f"labels_{critic}", f"rewards_{critic}"):
            if name in plots:
                out += [f"![{name}]({plots[name]})", ""]
    if revisers and critics:
        out += ["## Labels by original rank", ""]
        by_rank = {n: c[critics[0]] for n, c in revisers.items() if any(c[critics[0]]["all"]["labels"].values())}
        header = ["rank"] + [f"{n} {lb}" for n in by_rank for lb in LABELS]
        rows = [[r] + [f"{by_rank[n][r]['labels'].get(lb, 0):.0%}" for n in by_rank for lb in LABELS]
                for r in next(iter(by_rank.values()))] if by_rank else []
        out += [_md_table(header, rows), ""]
    claim = claim_line(report)
    if claim:
        out += [claim, ""]
    pairwise = metrics.get("reviser_pairwise") or {}
    if pairwise:
        out += ["## Revisers head to head", "", "Win rate of the first reviser's revision over the second's on the "
                "same originals, judged by each critic (a tie counts half).", ""]
        rows = [[pair, critic, f"{w['win_rate']:.1%}", str(w["wins"]), str(w["ties"]), str(w["losses"])]
                for critic, pairs in pairwise.items() for pair, w in pairs.items()]
        out += [_md_table(["pair", "critic", "win rate", "wins", "ties", "losses"], rows), ""]
    if metrics.get("refinement"):
        out += ["## Direct and self-refined answers by round", "",
                f"Mean reward ({metrics['critic']}) of each model's greedy answers to the held-out prompts, and "
                "of the same answers after the model refined them itself (no critic in the loop).", "",
                _md_table(*refinement_rows(metrics)), ""]
        if "refinement" in plots:
            out += [f"![refinement]({plots['refinement']})", ""]
    elif metrics.get("policy"):
        out += ["## Policy on held-out prompts", "", "Mean critic reward, and win rate against the reference "
                "(best) responses: a tie counts half.", "", _md_table(*policy_rows(metrics)), ""]
        if "policy" in plots:
            out += [f"![policy]({plots['policy']})", ""]
    if "losses" in plots:
        out += ["## Training loss", "", "Every training of the run (TensorBoard: `tensorboard --logdir` on a "
                "trained model's logs/).", "", f"![losses]({plots['losses']})", ""]
    return "\n".join(out)


def compare_table(reports: list[dict]) -> Table:
    """Several runs side by side: the policy's reward per stage and the revisers' overall benefit,
    under each run's first critic."""
    table = Table(title="Runs side by side")
    table.add_column("measure")
    for r in reports:
        table.add_column(r["name"], justify="right")
    rows: dict[str, list[str]] = {}
    for i, r in enumerate(reports):
        metrics = r.get("metrics") or {}
        for stage, scores in (metrics.get("policy") or {}).items():
            critic = next(iter(scores))
            cells = rows.setdefault(f"policy reward: {POLICY_TITLES.get(stage, stage)} ({critic})",
                                    ["-"] * len(reports))
            cells[i] = f"{scores[critic]:.3f}"
        for name, by_critic in (metrics.get("reviser") or {}).items():
            critic = next(iter(by_critic))
            rows.setdefault(f"{name} reviser benefit, all ranks ({critic})", ["-"] * len(reports))[i] = \
                _num(by_critic[critic]["all"]["mean_benefit"])
    for measure, cells in rows.items():
        table.add_row(measure, *cells)
    return table


def write_report(run_dir: Path, samples: list[dict] | None = None) -> Path:
    """report.md and plots/*.png in the run directory, from its report.json and (for the reward
    histograms) the evaluate stage's samples. Returns report.md's path."""
    from seft import plots
    from seft.storage import write_atomic

    report = json.loads((run_dir / "report.json").read_text())
    metrics, made, out = report.get("metrics") or {}, {}, run_dir / "plots"
    revisers = metrics.get("reviser") or {}
    for critic in (list(next(iter(revisers.values()))) if revisers else []):
        made[f"reviser_ranks_{critic}"] = plots.reviser_by_rank(revisers, critic, out / f"reviser_ranks_{critic}.png")
        made[f"labels_{critic}"] = plots.label_shares(revisers, critic, out / f"labels_{critic}.png")
        if samples:
            made[f"rewards_{critic}"] = plots.reward_histograms(samples, critic, out / f"rewards_{critic}.png")
    if metrics.get("refinement"):
        made["refinement"] = plots.refinement_rounds(metrics["refinement"], metrics["critic"],
                                                     out / "refinement.png")
    elif metrics.get("policy"):
        made["policy"] = plots.policy_rewards(metrics["policy"], out / "policy.png")
    trainings = {f"{stage}/{job}": t for stage, s in (report.get("summaries") or {}).items()
                 for job, t in (s.get("trainings") or {}).items() if t.get("losses")}
    if trainings:
        made["losses"] = plots.training_losses(trainings, out / "losses.png")
    path = run_dir / "report.md"
    write_atomic(path, markdown(report, {k: str(v.relative_to(run_dir)) for k, v in made.items()}))
    return path
