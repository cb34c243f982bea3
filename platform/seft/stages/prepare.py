"""prepare: read the preference data (any shape seft.preference reads) and split it into test,
warm-up and adaptive splits (3:7 between the last two).

Warm-up and adaptive samples pair an original (a random one of `data.original_ranks`, every rank
but 0 by default; `data.originals_per_prompt` different ones) with the target (rank 0). The test
split keeps every rank as an original, for evaluation per rank, and its prompts (with the rank-0
response as reference) are the held-out prompts for the policy. A record's metadata rides along
to the critics."""

from __future__ import annotations

import random

from seft.errors import SeftError
from seft.preference import read_preference, read_prompts
from seft.records import PreferenceRecord, RevisionSample, write_jsonl
from seft.stages import Stage
from seft.storage import local_path


def stage(spec) -> Stage:
    """bootstrap makes the data, or rank the preference data; else the files' content is a parameter."""
    if spec.bootstrap is not None:
        return Stage("prepare", run, reads=("data", "bootstrap", "ranking"), inputs=("bootstrap",))
    return Stage("prepare", run, reads=("data", "bootstrap", "ranking"), inputs=("rank",) if spec.ranking else (),
                 files=(spec.data.prompts,) if spec.ranking else (spec.data.preference, spec.data.prompts))


def _sample(rec: PreferenceRecord, original, sample_id: str) -> RevisionSample:
    return RevisionSample(id=sample_id, prompt=rec.prompt, original=original.content, rank=original.rank,
                          target=rec.responses[0].content, metadata=rec.metadata)


def run(ctx) -> dict:
    spec, out, cfg = ctx.spec, ctx.out, ctx.spec.data
    if spec.bootstrap:
        pref_path, prompts_path = ctx.input("bootstrap") / "preference.jsonl", ctx.input("bootstrap") / "prompts.jsonl"
    else:
        prompts_path = local_path(cfg.prompts)
        pref_path = ctx.input("rank") / "preference.jsonl" if spec.ranking else local_path(cfg.preference)
    records = list(read_preference(pref_path))
    if len(records) <= cfg.test_size + 1:
        raise SeftError(f"data.test_size {cfg.test_size} leaves no training data "
                        f"({len(records)} preference records in {pref_path})")
    rng = random.Random(spec.seed)
    rng.shuffle(records)
    test, train = records[:cfg.test_size], records[cfg.test_size:]
    n_warmup = max(1, round(len(train) * cfg.warmup_fraction))

    def paired(recs):
        out = []
        for r in recs:
            allowed = cfg.original_ranks or range(1, len(r.responses))
            choices = [resp for resp in r.responses if resp.rank in allowed]
            if not choices:
                raise SeftError(f"{pref_path}: record {r.id!r} has none of data.original_ranks "
                                f"{cfg.original_ranks} (its ranks: 0..{len(r.responses) - 1})")
            if cfg.originals_per_prompt == 1:  # one draw, as before the option: earlier runs' splits stand
                out.append(_sample(r, rng.choice(choices), r.id))
            else:
                out += [_sample(r, o, f"{r.id}-r{o.rank}")
                        for o in rng.sample(choices, min(cfg.originals_per_prompt, len(choices)))]
        return out

    return {
        "warmup": write_jsonl(out / "warmup.jsonl", paired(train[:n_warmup])),
        "adaptive": write_jsonl(out / "adaptive.jsonl", paired(train[n_warmup:])),
        "test": write_jsonl(out / "test.jsonl", (_sample(r, resp, f"{r.id}-r{resp.rank}")
                                                 for r in test for resp in r.responses)),
        "heldout": write_jsonl(out / "heldout.jsonl", (
            {"id": r.id, "prompt": [m.model_dump() for m in r.prompt], "reference": r.responses[0].content,
             "metadata": r.metadata} for r in test)),
        "prompts": write_jsonl(out / "prompts.jsonl", read_prompts(prompts_path)),
    }
