"""evaluate: the paper's metrics on the held-out split.

Revisers (preliminary, adaptive, and the baseline revisers when the spec has them) revise every
test original of ranks 0..6; each critic scores originals and revisions: mean benefit,
improvement rate and label shares per rank, and each pair of revisers head to head. Policies
(initial, the baselines, after internal, after external) answer the held-out prompts;
each critic scores the answers: mean reward, and win rate against the reference responses; an
LLM judge (`evaluation.judge`) rates them too, MT-Bench style, when the spec names one.
Revisers decode as the pipeline uses them (`revision`); policies as `evaluation.sampling` says."""

from __future__ import annotations

from contextlib import ExitStack
from statistics import fmean

from seft.client import CriticClient, GeneratorClient, ReviserClient
from seft.errors import SeftError
from seft.judge import judge_from_spec, question_text
from seft.metrics import dominant_label, improvement_rate, mean_benefit, reviser_by_rank, win_rate
from seft.records import RevisionSample, messages, read_jsonl, write_jsonl
from seft.stages import Ref, ServiceSpec, Stage, model_ref
from seft.stages.baseline_revisers import emits_labels

CLAIM_RANKS = (0, 1)  # the paper's central claim: the adaptive reviser keeps strong originals strong
ONE_LABEL = 0.95  # the adaptive reviser's share of one label at or above which evaluate warns


def revisers(spec) -> dict[str, tuple[Ref, bool]]:
    """{name: (model, label_first)}, the adaptive reviser second."""
    out = {"preliminary": (Ref("warmup", "reviser"), False), "adaptive": (Ref("adapt", "reviser"), True)}
    for name in spec.baselines.revisers if spec.baselines else ():
        out[name] = (Ref("baseline_revisers", name), emits_labels(name))
    return out


def policies(spec) -> dict[str, Ref]:
    """In the order of the paper's Table 2: the initial policy, the baselines, then SEFT's stages."""
    out = {"initial": model_ref(spec, "policy")}
    for name in spec.baselines.policies if spec.baselines else ():
        out[name] = Ref("baseline_policies", name)
    return out | {"internal": Ref("internal", "policy"), "external": Ref("external", "policy")}


def stage(spec) -> Stage:
    services = {f"reviser-{name}": ServiceSpec("reviser", ref, label_first=labels)
                for name, (ref, labels) in revisers(spec).items()}
    services |= {f"policy-{name}": ServiceSpec("generator", ref) for name, ref in policies(spec).items()}
    services |= {f"critic-{c.name}": ServiceSpec("critic", critic=c) for c in spec.critics}
    return Stage("evaluate", run, reads=("critics", "evaluation", "revision"), inputs=("prepare",), services=services)


def _named(ctx, kind: str) -> list[str]:
    """The revisers' or policies' names, in the order the declaration has them."""
    return [key.removeprefix(f"{kind}-") for key in ctx.plan.services if key.startswith(f"{kind}-")]


def run(ctx) -> dict:
    spec = ctx.spec
    test = list(read_jsonl(ctx.input("prepare") / "test.jsonl", RevisionSample))
    heldout = list(read_jsonl(ctx.input("prepare") / "heldout.jsonl"))
    bs = spec.services.batch_size
    items = [(messages(s.prompt), s.original) for s in test]
    metas, heldout_metas = [s.metadata for s in test], [h.get("metadata") for h in heldout]  # for rule critics
    prompts = [h["prompt"] for h in heldout]
    metrics: dict = {"reviser": {}, "policy": {}, "policy_vs_reference": {}, "reviser_pairwise": {}}
    revised_rewards: dict[str, dict[str, list[float]]] = {}  # critic -> reviser -> reward of each revision
    rows_out = []
    with ctx.services() as ep, ExitStack() as stack:
        critics = {c.name: stack.enter_context(CriticClient(ep[f"critic-{c.name}"], batch_size=bs))
                   for c in spec.critics}
        original_rewards = {cname: critic.score([(p, o, m) for (p, o), m in zip(items, metas)])
                            for cname, critic in critics.items()}
        for name in _named(ctx, "reviser"):
            with (ctx.progress(f"revising test set ({name} reviser)", len(items)) as advance,
                  ReviserClient(ep[f"reviser-{name}"], batch_size=bs) as reviser):
                revisions = reviser.revise(items, spec.revision, seed=spec.seed, on_batch=advance)
            metrics["reviser"][name] = {}
            for cname, critic in critics.items():
                originals = original_rewards[cname]
                revised = critic.score([(p, r.text, m) for (p, _), r, m in zip(items, revisions, metas)])
                revised_rewards.setdefault(cname, {})[name] = revised
                rows = [{"rank": s.rank, "reward_original": o, "reward_revised": v, "revised": r.revised,
                         "label": r.label.short if r.label else None}
                        for s, o, v, r in zip(test, originals, revised, revisions)]
                metrics["reviser"][name][cname] = reviser_by_rank(rows)
                rows_out += [{"reviser": name, "critic": cname, "id": s.id, "revision": r.text, **row}
                             for s, r, row in zip(test, revisions, rows)]
        names = _named(ctx, "reviser")
        for cname, by_reviser in revised_rewards.items():  # each pair of revisers on the same originals
            metrics["reviser_pairwise"][cname] = {f"{a} vs {b}": win_rate(by_reviser[a], by_reviser[b])
                                                  for i, a in enumerate(names) for b in names[i + 1:]}
        references = [(p, h["reference"], m) for p, h, m in zip(prompts, heldout, heldout_metas)]
        reference_rewards = {cname: critic.score(references) for cname, critic in critics.items()}
        answers_by_policy = {}
        for name in _named(ctx, "policy"):
            with (ctx.progress(f"answering held-out prompts ({name} policy)", len(prompts)) as advance,
                  GeneratorClient(ep[f"policy-{name}"], batch_size=bs) as gen):
                answers = answers_by_policy[name] = gen.generate(prompts, spec.evaluation.sampling, seed=spec.seed,
                                                                 on_batch=advance)
            scored = list(zip(prompts, answers, heldout_metas))
            rewards = {cname: critic.score(scored) for cname, critic in critics.items()}
            metrics["policy"][name] = {cname: fmean(r) for cname, r in rewards.items()}
            metrics["policy_vs_reference"][name] = {cname: win_rate(r, reference_rewards[cname])
                                                    for cname, r in rewards.items()}
    judged = judge_answers(ctx, prompts, answers_by_policy) if spec.evaluation.judge else {}
    if judged:
        metrics["judge"] = {name: report.summary() for name, report in judged.items()}
    for name, answers in answers_by_policy.items():
        verdicts = judged[name].judgements if judged else [None] * len(answers)
        rows_out += [{"policy": name, "id": h["id"], "answer": a,
                      **({"rating": v.rating, "judge_error": v.error, "judgement": v.text} if v else {})}
                     for h, a, v in zip(heldout, answers, verdicts)]
    write_jsonl(ctx.out / "samples.jsonl", rows_out)
    first = spec.critics[0].name
    adaptive = metrics["reviser"]["adaptive"][first]
    headline = {"critic": first,
                "adaptive_benefit_rank_4_6": mean_benefit(adaptive, (4, 5, 6)),
                "improvement_rate_rank_0_1": {name: improvement_rate(by_critic[first], CLAIM_RANKS)
                                              for name, by_critic in metrics["reviser"].items()},
                "policy_reward": {name: by_critic[first] for name, by_critic in metrics["policy"].items()}}
    if judged:
        headline["judge_rating"] = {name: summary["mean_rating"] for name, summary in metrics["judge"].items()}
    warning = one_label_warning(adaptive["all"]["labels"])
    return {"metrics": metrics, "headline": headline, **({"warnings": [warning]} if warning else {})}


def one_label_warning(shares: dict[str, float]) -> str | None:
    """A warning when the adaptive reviser gives one label to ONE_LABEL or more of the test originals."""
    label, share = dominant_label(shares)
    if share < ONE_LABEL:
        return None
    return (f"the adaptive reviser labels {share:.0%} of the test originals [{label.title()} Revise], whatever "
            "their quality: its label does not follow its input. Check the label stage's shares (balance them: "
            "README, \"Label health\"), and give adapt more steps or a higher learning rate")


def judge_answers(ctx, prompts: list[list[dict]], answers_by_policy: dict[str, list[str]]) -> dict:
    """{policy: JudgeReport} from the spec's LLM judge. Malformed judgements are kept and counted;
    a judge that answers no call at all is an error, not a column of blanks."""
    cfg = ctx.spec.evaluation.judge
    judge, questions, out = judge_from_spec(cfg), [question_text(p) for p in prompts], {}
    for name, answers in answers_by_policy.items():
        with ctx.progress(f"judging ({name} policy, {cfg.model})", len(answers)) as advance:
            out[name] = judge.grade(list(zip(questions, answers)), on_done=advance)
        summary = out[name].summary()
        if summary["failed_calls"] == summary["n"]:
            raise SeftError(f"evaluation.judge: every call to {cfg.endpoint} failed, e.g. "
                            f"{out[name].judgements[0].error}")
    return out
