"""rank: build the preference data from prompts alone (`ranking`, instead of `data.preference`).

The external generator, and the initial policy when `ranking.policy` > 0, sample answers to each
prompt (one pass per answer, each with its own seed, so a server that seeds per request still
gives different answers); the critic scores every answer, with the prompt's metadata; sorted by
score, ties in sampling order, the answers are the responses ranked 0 (best) .. n-1. The stage
writes preference.jsonl in the scored shape seft.preference reads, each answer with its score and
source, and reports the share of prompts whose answers all tie: they carry no preference, and
`ranking.drop_tied` leaves them out."""

from __future__ import annotations

from statistics import fmean

from seft.client import CriticClient, GeneratorClient
from seft.errors import SeftError
from seft.preference import read_prompts
from seft.records import messages, write_jsonl
from seft.stages import ServiceSpec, Stage, model_ref
from seft.storage import local_path

SOURCES = ("generator", "policy")  # each a `ranking` field (answers per prompt) and a model role


def stage(spec) -> Stage:
    cfg = spec.ranking
    services = {source: ServiceSpec("generator", model_ref(spec, source)) for source in SOURCES if getattr(cfg, source)}
    services["critic"] = ServiceSpec("critic", critic=spec.critic(cfg.critic))
    return Stage("rank", run, reads=("ranking",), files=(cfg.prompts,), services=services)


def run(ctx) -> dict:
    spec, cfg, bs = ctx.spec, ctx.spec.ranking, ctx.spec.services.batch_size
    records = list(read_prompts(local_path(cfg.prompts)))
    if not records:
        raise SeftError(f"ranking.prompts: {cfg.prompts!r} has no rows")
    prompts = [messages(r.prompt) for r in records]
    answers: list[list[dict]] = [[] for _ in records]
    with ctx.services() as ep:
        for source in SOURCES:
            n = getattr(cfg, source)
            if not n:
                continue
            with (ctx.progress(f"sampling {n} answers per prompt ({source})", n * len(prompts)) as advance,
                  GeneratorClient(ep[source], batch_size=bs) as gen):
                for k in range(n):
                    texts = gen.generate(prompts, cfg.sampling, seed=spec.seed * 1000 + k, on_batch=advance)
                    for mine, text in zip(answers, texts):
                        mine.append({"content": text, "source": source})
        flat = [(p, a["content"], r.metadata) for p, r, mine in zip(prompts, records, answers) for a in mine]
        with (ctx.progress("scoring answers", len(flat)) as advance,
              CriticClient(ep["critic"], batch_size=bs) as critic):
            scores = iter(critic.score(flat, on_batch=advance))
    for mine in answers:
        for a in mine:
            a["score"] = next(scores)
        mine.sort(key=lambda a: -a["score"])  # stable: ties keep the sampling order
    tied = [mine[0]["score"] == mine[-1]["score"] for mine in answers]
    kept = write_jsonl(ctx.out / "preference.jsonl", (
        {"id": r.id, "prompt": p, "responses": mine, "metadata": r.metadata}
        for r, p, mine, t in zip(records, prompts, answers, tied) if not (t and cfg.drop_tied)))
    if not kept:
        raise SeftError(f"ranking.drop_tied: the answers to every one of the {len(records)} prompts tied")
    by_source = {s: [a["score"] for mine in answers for a in mine if a["source"] == s]
                 for s in SOURCES if getattr(cfg, s)}
    return {"prompts": len(records), "answers": len(flat), "kept": kept,
            "mean_score": {s: fmean(v) for s, v in by_source.items()},
            "best_score_mean": fmean(mine[0]["score"] for mine in answers),
            "all_tied_share": sum(tied) / len(answers)}
