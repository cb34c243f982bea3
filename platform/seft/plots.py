"""The report's figures (PNG, matplotlib without a display): reviser benefit and improvement rate
per original rank, label shares per rank, reward histograms before and after revision, policy
reward per stage, every training's loss. Each function takes the evaluate stage's metrics (or
samples, or the trainings' summaries) and a path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, and safe in threads
import matplotlib.pyplot as plt  # noqa: E402

from seft.metrics import LABELS  # noqa: E402

RANKS = [str(r) for r in range(7)]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def reviser_by_rank(revisers: dict, critic: str, path: Path) -> Path:
    """revisers: {name: {critic: {rank: summary}}} (metrics["reviser"])."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, by_critic in revisers.items():
        by_rank = by_critic[critic]
        ranks = [r for r in RANKS if r in by_rank]
        left.plot(ranks, [by_rank[r]["mean_benefit"] for r in ranks], marker="o", label=name)
        right.plot(ranks, [by_rank[r]["improvement_rate"] for r in ranks], marker="o", label=name)
    left.axhline(0, color="grey", linewidth=0.8)
    left.set(title=f"Mean benefit by original rank ({critic})", xlabel="original rank (0 = best)",
             ylabel="reward(revised) - reward(original)")
    right.set(title=f"Improvement rate by original rank ({critic})", xlabel="original rank (0 = best)",
              ylabel="share of revised responses improved", ylim=(0, 1))
    left.legend()
    right.legend()
    return _save(fig, path)


def label_shares(revisers: dict, critic: str, path: Path) -> Path:
    """Stacked label shares per rank, one panel per reviser that emits labels."""
    labelled = {n: c[critic] for n, c in revisers.items() if any(c[critic]["all"]["labels"].values())}
    fig, axes = plt.subplots(1, max(1, len(labelled)), figsize=(5.5 * max(1, len(labelled)), 4), squeeze=False)
    for ax, (name, by_rank) in zip(axes[0], labelled.items()):
        ranks = [r for r in RANKS if r in by_rank]
        bottom = [0.0] * len(ranks)
        for label in LABELS:
            shares = [by_rank[r]["labels"].get(label, 0.0) for r in ranks]
            ax.bar(ranks, shares, bottom=bottom, label=f"[{label.title()} Revise]")
            bottom = [b + s for b, s in zip(bottom, shares)]
        ax.set(title=f"Labels of the {name} reviser by original rank", xlabel="original rank (0 = best)",
               ylabel="share of originals", ylim=(0, 1))
        ax.legend()
    return _save(fig, path)


def reward_histograms(samples: list[dict], critic: str, path: Path) -> Path:
    """samples: the evaluate stage's reviser rows (reviser, critic, reward_original, reward_revised)."""
    names = list(dict.fromkeys(s["reviser"] for s in samples if s.get("critic") == critic))
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(5.5 * max(1, len(names)), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [s for s in samples if s.get("reviser") == name and s.get("critic") == critic]
        ax.hist([r["reward_original"] for r in rows], bins=20, alpha=0.6, label="originals")
        ax.hist([r["reward_revised"] for r in rows], bins=20, alpha=0.6, label=f"after the {name} reviser")
        ax.set(title=f"Rewards before and after revision ({name})", xlabel=f"reward ({critic})", ylabel="responses")
        ax.legend()
    return _save(fig, path)


def policy_rewards(policy: dict, path: Path) -> Path:
    """policy: {policy: {critic: mean reward}} (metrics["policy"]), in the table's order."""
    stages = list(policy)
    critics = list(next(iter(policy.values())))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(stages)), 4.5))
    width = 0.8 / len(critics)
    for i, critic in enumerate(critics):
        ax.bar([x + i * width for x in range(len(stages))], [policy[s][critic] for s in stages], width, label=critic)
    ax.set_xticks([x + width * (len(critics) - 1) / 2 for x in range(len(stages))], stages,
                  rotation=20 if len(stages) > 4 else 0)
    ax.set(title="Policy: mean critic reward on held-out prompts", xlabel="policy (initial, baselines, SEFT stages)",
           ylabel="mean reward")
    ax.legend(title="critic")
    return _save(fig, path)


def training_losses(trainings: dict, path: Path) -> Path:
    """trainings: {"stage/job": {"losses": [...], "logging_steps": n}}: each training's loss curve."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, t in trainings.items():
        every = t.get("logging_steps") or 1
        ax.plot([every * (i + 1) for i in range(len(t["losses"]))], t["losses"], marker=".", label=name)
    ax.set(title="Training loss", xlabel="step", ylabel="loss")
    ax.legend(fontsize="small")
    return _save(fig, path)


def refinement_rounds(refinement: dict, critic: str, path: Path) -> Path:
    """refinement: {model: {"direct": r, "refined": r, ...}} (metrics["refinement"]), in training
    order: the direct and the self-refined answers' mean reward, model by model."""
    models = list(refinement)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(models)), 4.5))
    for key, marker in (("direct", "o"), ("refined", "s")):
        ax.plot(range(len(models)), [refinement[m][key] for m in models], marker=marker,
                label="self-refined" if key == "refined" else key)
    ax.set_xticks(range(len(models)), models)
    ax.set(title="Direct and self-refined answers by round", xlabel="model (in training order)",
           ylabel=f"mean reward ({critic})")
    ax.legend(title="answer")
    return _save(fig, path)
