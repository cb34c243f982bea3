"""The baseline stages' data builders: Aligner and Appendix B's label reviser, and the
preference baselines' SFT and DPO/ORPO records."""

from __future__ import annotations

import pytest

from seft.chat import reviser_prompt
from seft.labelling import Label
from seft.records import RevisionSample
from seft.stages.baseline_policies import chosen_example, preference_pair
from seft.stages.baseline_revisers import aligner_example, label_example, rank_label

PROMPT = [{"role": "user", "content": "Sort ascending : 3 1 2"}]


def sample(i: int, rank: int) -> RevisionSample:
    return RevisionSample(id=f"s{i}", prompt=PROMPT, original=f"wrong {rank}", rank=rank, target="1 2 3")


def completion(example: dict) -> str:
    assert [m["role"] for m in example["completion"]] == ["assistant"]
    return example["completion"][0]["content"]


@pytest.mark.parametrize("rank, label", [(1, Label.MINOR), (3, Label.MINOR), (4, Label.MAJOR), (6, Label.MAJOR)])
def test_rank_labels_of_appendix_b(rank, label):
    assert all(rank_label(rank, seed, f"s{i}", 1.0) is label for seed in (0, 1) for i in range(20))


def test_aligner_always_revises_without_a_label():
    ex = aligner_example(sample(0, 2))
    assert ex["prompt"] == reviser_prompt(PROMPT, "wrong 2") and completion(ex) == "1 2 3"


def test_label_reviser_keeps_a_share_of_rank_0_originals_and_revises_the_rest():
    best = [RevisionSample(id=f"b{i}", prompt=PROMPT, original="1 2 3", rank=0, target="1 2 3") for i in range(2000)]
    examples = [label_example(s, seed=0, no_revise_share=0.1) for s in best]
    kept = [ex for ex in examples if completion(ex) == Label.NO.value]  # the label alone
    assert 0.08 < len(kept) / len(best) < 0.12
    assert {completion(ex) for ex in examples} == {Label.NO.value, f"{Label.MAJOR.value} 1 2 3"}
    assert all(ex["prompt"] == reviser_prompt(PROMPT, "1 2 3") for ex in examples)
    assert [label_example(s, 0, 0.1) for s in best] == examples  # a hash of (seed, id), not of the order
    assert [label_example(s, 1, 0.1) for s in best] != examples
    assert all(completion(label_example(s, 0, 0.0)) != Label.NO.value for s in best[:50])
    for rank in range(1, 7):  # worse originals: labelled by rank, never kept
        ex = label_example(sample(rank, rank), seed=0, no_revise_share=1.0)
        assert ex["prompt"] == reviser_prompt(PROMPT, f"wrong {rank}")
        assert completion(ex) == f"{(Label.MINOR if rank <= 3 else Label.MAJOR).value} 1 2 3"


def test_preference_baselines_pair_the_best_response_with_the_original():
    s = sample(0, 5)
    assert preference_pair(s) == {"prompt": PROMPT, "chosen": [{"role": "assistant", "content": "1 2 3"}],
                                  "rejected": [{"role": "assistant", "content": "wrong 5"}]}
    sft = chosen_example(s).model_dump(mode="json")
    assert sft == {"prompt": PROMPT, "completion": [{"role": "assistant", "content": "1 2 3"}]}
