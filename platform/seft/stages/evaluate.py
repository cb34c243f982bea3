"""evaluate: the paper's metrics (DESIGN.md step 7) on the held-out split.

Revisers (preliminary and adaptive) revise every test original of ranks 0..6; each critic
scores originals and revisions: mean benefit, improvement rate and label shares per rank.
Policies (initial, after internal, after external) answer the held-out prompts greedily; each
critic scores the answers: mean reward per stage."""

from __future__ import annotations

from contextlib import ExitStack
from statistics import fmean

from seft.client import CriticClient, GeneratorClient, ReviserClient
from seft.metrics import mean_benefit, reviser_by_rank, win_rate
from seft.records import RevisionSample, messages, read_jsonl, write_jsonl
from seft.stages import Ref, ServiceSpec, model_ref

NAME = "evaluate"
REVISERS = {"preliminary": ("warmup", False), "adaptive": ("adapt", True)}
POLICIES = ("initial", "internal", "external")


def inputs(spec) -> tuple[str, ...]:
    return ("prepare", "warmup", "adapt", "internal", "external") + (("bootstrap",) if spec.bootstrap else ())


def services(spec) -> dict[str, ServiceSpec]:
    policies = {"initial": model_ref(spec, "policy"), "internal": Ref("internal", "policy"),
                "external": Ref("external", "policy")}
    out = {f"reviser-{name}": ServiceSpec("reviser", Ref(stage, "reviser"), label_first=labels)
           for name, (stage, labels) in REVISERS.items()}
    out |= {f"policy-{name}": ServiceSpec("generator", ref) for name, ref in policies.items()}
    return out | {f"critic-{c.name}": ServiceSpec("critic", critic=c) for c in spec.critics}


def trainings(spec) -> dict:
    return {}


def params(spec) -> dict:
    return {"critics": [c.model_dump() for c in spec.critics], "evaluation": spec.evaluation.model_dump(),
            "seed": spec.seed, "policy": None if spec.bootstrap else spec.models.policy}


def run(ctx) -> dict:
    spec = ctx.spec
    test = list(read_jsonl(ctx.input("prepare") / "test.jsonl", RevisionSample))
    heldout = list(read_jsonl(ctx.input("prepare") / "heldout.jsonl"))
    sampling, bs = spec.evaluation.sampling, spec.services.batch_size
    items = [(messages(s.prompt), s.original) for s in test]
    prompts = [h["prompt"] for h in heldout]
    metrics: dict = {"reviser": {}, "policy": {}, "reviser_pairwise": {}}
    revised_rewards: dict[str, dict[str, list[float]]] = {}  # critic -> reviser -> reward of each revision
    rows_out = []
    with ctx.services() as ep, ExitStack() as stack:
        critics = {c.name: stack.enter_context(CriticClient(ep[f"critic-{c.name}"], batch_size=bs))
                   for c in spec.critics}
        original_rewards = {cname: critic.score(items) for cname, critic in critics.items()}
        for name in REVISERS:
            with (ctx.progress(f"revising test set ({name} reviser)", len(items)) as advance,
                  ReviserClient(ep[f"reviser-{name}"], batch_size=bs) as reviser):
                revisions = reviser.revise(items, sampling, seed=spec.seed, on_batch=advance)
            metrics["reviser"][name] = {}
            for cname, critic in critics.items():
                originals = original_rewards[cname]
                revised = critic.score([(p, r.text) for (p, _), r in zip(items, revisions)])
                revised_rewards.setdefault(cname, {})[name] = revised
                rows = [{"rank": s.rank, "reward_original": o, "reward_revised": v, "revised": r.revised,
                         "label": r.label.short if r.label else None}
                        for s, o, v, r in zip(test, originals, revised, revisions)]
                metrics["reviser"][name][cname] = reviser_by_rank(rows)
                rows_out += [{"reviser": name, "critic": cname, "id": s.id, "revision": r.text, **row}
                             for s, r, row in zip(test, revisions, rows)]
        names = list(REVISERS)
        for cname, by_reviser in revised_rewards.items():  # each pair of revisers on the same originals
            metrics["reviser_pairwise"][cname] = {f"{a} vs {b}": win_rate(by_reviser[a], by_reviser[b])
                                                  for i, a in enumerate(names) for b in names[i + 1:]}
        for name in POLICIES:
            with (ctx.progress(f"answering held-out prompts ({name} policy)", len(prompts)) as advance,
                  GeneratorClient(ep[f"policy-{name}"], batch_size=bs) as gen):
                answers = gen.generate(prompts, sampling, seed=spec.seed, on_batch=advance)
            metrics["policy"][name] = {cname: fmean(critic.score(list(zip(prompts, answers))))
                                       for cname, critic in critics.items()}
            rows_out += [{"policy": name, "id": h["id"], "answer": a} for h, a in zip(heldout, answers)]
    write_jsonl(ctx.out / "samples.jsonl", rows_out)
    first = spec.critics[0].name
    adaptive = metrics["reviser"]["adaptive"][first]
    headline = {"critic": first,
                "adaptive_benefit_rank_4_6": mean_benefit(adaptive, (4, 5, 6)),
                "policy_reward": {name: metrics["policy"][name][first] for name in POLICIES}}
    return {"metrics": metrics, "headline": headline}
