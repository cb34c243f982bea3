"""SELF and EVOLVE's data: the refinement format, the meta-skill corpus, the filters, and the
SFT examples and DPO pairs built from refinement chains (hand-built chains, exact values)."""

from __future__ import annotations

import pytest

from seft.errors import SeftError
from seft.records import RevisionSample, read_jsonl, write_jsonl
from seft.refinement import (MetaSkillRecord, Step, best, corpus_from_samples, direct_pair, final, kept_answer,
                             meta_skill_examples, parse_refinement, refine_completion, refine_prompt,
                             refinement_pairs, refinements, round_examples, round_pairs)
from seft.tasks import sorting

P = [{"role": "user", "content": "Sort ascending : 3 1 2"}]


def turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_the_refinement_format_round_trips_with_and_without_feedback():
    assert refine_completion("wrong at 2 3", "1 2 3") == "Feedback : wrong at 2 3 Refinement : 1 2 3"
    assert parse_refinement("Feedback : wrong at 2 3 Refinement : 1 2 3") == ("wrong at 2 3", "1 2 3")
    assert refine_completion(None, "1 2 3") == "1 2 3" and parse_refinement(" 1 2 3 ") == (None, "1 2 3")
    assert parse_refinement("Feedback : too short") == ("too short", "")  # cut off before the refinement
    [user] = refine_prompt(P, "1 3 2")
    assert user["role"] == "user"
    assert user["content"] == ("Prompt :\nuser : Sort ascending : 3 1 2\nResponse :\n1 3 2\n"
                               "Give feedback and refine the response .")


def test_the_sorting_teachers_feedback_names_what_is_wrong():
    assert sorting.feedback(P, "1 2 3") == "correct"
    assert sorting.feedback(P, "1 3 2") == "wrong at 2 3"
    assert sorting.feedback(P, "1 2") == "too short"
    assert sorting.feedback(P, "2 1 3 4") == "wrong at 1 2 too long"


def test_the_corpus_refines_each_original_and_leaves_each_target_alone():
    samples = [RevisionSample(id="a", prompt=P, original="1 3 2", rank=2, target="1 2 3")]
    corpus = corpus_from_samples(samples, sorting.feedback)
    assert [(r.id, r.response, r.feedback, r.refined) for r in corpus] == [
        ("a-original", "1 3 2", "wrong at 2 3", "1 2 3"), ("a-target", "1 2 3", "correct", "1 2 3")]
    assert [r.feedback for r in corpus_from_samples(samples, None)] == [None, None]  # EVOLVE: no feedback
    examples = meta_skill_examples(corpus)
    assert examples == [  # the prompt answered directly once, then each response refined
        {"prompt": P, "completion": turn("1 2 3")},
        {"prompt": refine_prompt(P, "1 3 2"), "completion": turn("Feedback : wrong at 2 3 Refinement : 1 2 3")},
        {"prompt": refine_prompt(P, "1 2 3"), "completion": turn("Feedback : correct Refinement : 1 2 3")}]


def test_a_corpus_file_with_a_bad_record_names_the_line_and_field(tmp_path):
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, [{"id": "a", "prompt": P, "response": "1 3 2", "feedback": "x", "refined": "1 2 3"},
                       {"id": "b", "prompt": P, "response": "1 3 2"}])
    with pytest.raises(SeftError, match=r"corpus.jsonl:2: refined: Field required"):
        list(read_jsonl(path, MetaSkillRecord))


CHAIN = [Step("1 3 2", None, 1 / 3), Step("3 1 2", "wrong at 2 3", 0.0, kept=False), Step("1 2 3", "wrong at 2 3", 1.0)]


def test_best_and_final_steps():
    assert best(CHAIN).text == "1 2 3" and final(CHAIN).text == "1 2 3"
    assert final(CHAIN[:2]).text == "1 3 2"  # a dropped refinement is never the answer
    tie = [Step("a", None, 0.5), Step("b", "x", 0.5)]
    assert best(tie).text == "a"  # no change without a gain


def test_the_filters_keep_by_critic_by_self_judgement_or_all():
    assert kept_answer(CHAIN, "critic", 1.0, "correct").text == "1 2 3"
    assert kept_answer(CHAIN[:2], "critic", 1.0, "correct") is None  # nothing reached min_reward
    assert kept_answer(CHAIN[:2], "critic", 0.3, "correct").text == "1 3 2"
    judged = [Step("1 2 3"), Step("1 2 3", "correct"), Step("2 1 3", "wrong at 1 2")]
    assert kept_answer(judged, "self", 1.0, "correct").text == "1 2 3"  # its own feedback called it correct
    assert kept_answer(CHAIN, "self", 1.0, "correct") is None  # it never did
    assert kept_answer(CHAIN, "none", 1.0, "correct").text == "1 2 3"


def test_a_refinement_after_a_dropped_one_refines_the_same_input():
    assert [(a.text, b.text) for a, b in refinements(CHAIN)] == [("1 3 2", "3 1 2"), ("1 3 2", "1 2 3")]


def test_dpo_pairs_from_a_chain_prefer_what_the_critic_scored_higher():
    pairs = refinement_pairs(P, CHAIN)
    assert pairs == [
        # 3 1 2 scored below its input 1 3 2: leaving the input unchanged is chosen
        {"prompt": refine_prompt(P, "1 3 2"), "chosen": turn("1 3 2"),
         "rejected": turn("Feedback : wrong at 2 3 Refinement : 3 1 2")},
        # 1 2 3 (a refinement of 1 3 2 again: 3 1 2 was dropped) scored above it: the refinement is chosen
        {"prompt": refine_prompt(P, "1 3 2"), "chosen": turn("Feedback : wrong at 2 3 Refinement : 1 2 3"),
         "rejected": turn("1 3 2")}]
    assert refinement_pairs(P, [Step("a"), Step("b")]) == []  # no rewards, no pairs
    assert direct_pair(P, CHAIN) == {"prompt": P, "chosen": turn("1 2 3"), "rejected": turn("1 3 2")}
    assert direct_pair(P, [Step("1 2 3", None, 1.0), Step("1 3 2", "x", 1 / 3)]) is None  # the answer was best
    assert round_pairs(P, CHAIN, reconstruct=True) == pairs + [direct_pair(P, CHAIN)]
    assert round_pairs(P, CHAIN, reconstruct=False) == pairs


def test_a_rounds_sft_examples_are_the_kept_answer_and_the_refinements_that_improved():
    kept = kept_answer(CHAIN, "critic", 1.0, "correct")
    assert round_examples(P, CHAIN, kept, reconstruct=True) == [
        {"prompt": P, "completion": turn("1 2 3")},
        {"prompt": refine_prompt(P, "1 3 2"), "completion": turn("Feedback : wrong at 2 3 Refinement : 1 2 3")}]
    assert round_examples(P, CHAIN, None, reconstruct=True) == round_examples(P, CHAIN, kept, reconstruct=False)
