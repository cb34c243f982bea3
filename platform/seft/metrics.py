"""Evaluation metrics of the SEFT paper, as plain functions over rows.

A reviser row: {"rank", "reward_original", "reward_revised", "revised", "label"}. The benefit of
a row is reward_revised - reward_original (0 when the reviser kept the original). The
improvement rate is the share of *revised* rows whose reward rose."""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

LABELS = ("major", "minor", "no")


def reviser_summary(rows: list[dict]) -> dict:
    revised = [r for r in rows if r["revised"]]
    labels = {k: sum(r["label"] == k for r in rows) / len(rows) for k in LABELS} if rows else {}
    return {
        "n": len(rows),
        "mean_benefit": fmean(r["reward_revised"] - r["reward_original"] for r in rows) if rows else None,
        "improvement_rate": (sum(r["reward_revised"] > r["reward_original"] for r in revised) / len(revised)
                             if revised else None),
        "revised": len(revised),
        "improved": sum(r["reward_revised"] > r["reward_original"] for r in revised),
        "revised_share": len(revised) / len(rows) if rows else None,
        "labels": labels,
        "mean_reward_original": fmean(r["reward_original"] for r in rows) if rows else None,
        "mean_reward_revised": fmean(r["reward_revised"] for r in rows) if rows else None,
    }


def label_shares(labels: list[str]) -> dict[str, float]:
    """{major, minor, no: share} of short label names."""
    return {k: labels.count(k) / len(labels) for k in LABELS} if labels else {}


def dominant_label(shares: dict[str, float]) -> tuple[str | None, float]:
    """(label, share) of the most common label; (None, 0.0) without labels."""
    return max(shares.items(), key=lambda kv: kv[1], default=(None, 0.0))


def reviser_by_rank(rows: list[dict]) -> dict:
    """{"0": summary, ..., "6": summary, "all": summary}."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[str(r["rank"])].append(r)
    out = {rank: reviser_summary(groups[rank]) for rank in sorted(groups, key=int)}
    out["all"] = reviser_summary(rows)
    return out


def mean_benefit(by_rank: dict, ranks) -> float | None:
    """The mean benefit over the rows of several ranks (weighted by their counts); None when the
    data has none of those ranks (pairs have ranks 0 and 1 only)."""
    picked = [by_rank[str(r)] for r in ranks if str(r) in by_rank]
    total = sum(s["n"] for s in picked)
    return sum(s["mean_benefit"] * s["n"] for s in picked) / total if total else None


def improvement_rate(by_rank: dict, ranks) -> float | None:
    """The improvement rate over the rows of several ranks together (None: nothing revised)."""
    picked = [by_rank[str(r)] for r in ranks if str(r) in by_rank]
    revised = sum(s["revised"] for s in picked)
    return sum(s["improved"] for s in picked) / revised if revised else None


def win_rate(ours: list[float], theirs: list[float]) -> dict:
    """Pairwise, item by item (the same prompts, the same critic): a tie counts half a win."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"win rate needs two equally long, non-empty lists, got {len(ours)} and {len(theirs)}")
    wins = sum(a > b for a, b in zip(ours, theirs))
    ties = sum(a == b for a, b in zip(ours, theirs))
    n = len(ours)
    return {"n": n, "wins": wins, "ties": ties, "losses": n - wins - ties, "win_rate": (wins + ties / 2) / n}
