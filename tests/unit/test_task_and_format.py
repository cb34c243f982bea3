import random
from statistics import fmean

import pytest

from seft.chat import encode_example, reviser_completion, reviser_prompt
from seft.labelling import Label
from seft.tasks import sorting, spelling


def test_rule_critic_scores():
    prompt = sorting.prompt_messages([5, 3, 9, 1])
    assert sorting.score(prompt, "1 3 5 9") == 1.0
    assert sorting.score(prompt, "3 1 5 9") == 0.5
    assert sorting.score(prompt, "1 3 5 9 9") == 0.8       # extra item: over the longer length
    assert sorting.score(prompt, "1 3 x 9") == 0.75
    assert sorting.score(prompt, "") == 0.0
    assert sorting.score(prompt, "01 3 5 9") == 1.0        # a number is a number


def test_spelling_critic_and_feedback():
    prompt = spelling.prompt_messages(["brread", "water", "unncle", "trrain", "plant", "money"])
    assert spelling.score(prompt, "bread water uncle train plant money") == 1.0
    assert spelling.score(prompt, "berad water uncle train plant money") == pytest.approx(5 / 6)
    assert spelling.score(prompt, "bread water uncle train plant money money") == pytest.approx(6 / 7)
    assert spelling.score(prompt, "") == 0.0
    assert spelling.feedback(prompt, "bread water uncle train plant money") == "correct"
    assert spelling.feedback(prompt, "berad water uncle tarin plant") == "wrong at 1 4 too short"
    assert spelling.typo("bread") == "berad" and spelling.CORRECT["berad"] == "bread"
    assert spelling.misspell("bread") == "brread" and spelling.CORRECT["brread"] == "bread"


def test_spelling_prompts_never_hold_an_answers_typo():
    """A typo can be seen in the answer alone: the prompts misspell words another way."""
    import random

    rng = random.Random(0)
    for _ in range(200):
        words = spelling.make_prompt(rng)
        assert not set(words) & set(spelling.TYPOS.values())
        for resp in spelling.ranked_responses(words, rng):
            typos = [w for w in resp["content"].split() if w in spelling.TYPOS.values()]
            assert len(typos) - resp["rank"] in (0, 1)  # the best of seven answers can have a typo too
            assert spelling.score(spelling.prompt_messages(words), resp["content"]) == \
                pytest.approx(1 - len(typos) / len(words))
    assert not set(spelling.TYPOS.values()) & set(spelling.WORDS)  # a typo is never a word


def test_spelling_error_kinds_count_every_position_as_the_critic_does():
    prompt = spelling.prompt_messages(["liight", "paper", "cloud"])  # light paper cloud
    cases = {"light paper cloud": {"right": 3},
             "lgiht paper cloud": {"typo": 1, "right": 2},
             "liight paper": {"misspelling": 1, "right": 1, "other word": 1},  # one short
             "paper light cloud zebra": {"other word": 3, "right": 1}}  # out of place, one long
    for response, kinds in cases.items():
        got = spelling.error_kinds(prompt, response)
        assert got == kinds, response
        assert got["right"] / got.total() == pytest.approx(spelling.score(prompt, response))


@pytest.mark.parametrize("task", [sorting, spelling])
def test_reward_falls_with_rank(task):
    rng = random.Random(0)
    by_rank = {k: [] for k in range(7)}
    for _ in range(1500):
        prompt = task.make_prompt(rng)
        for r in task.ranked_responses(prompt, rng):
            by_rank[r["rank"]].append(task.score(task.prompt_messages(prompt), r["content"]))
    means = [fmean(by_rank[k]) for k in range(7)]
    if task is sorting:
        assert means[0] == 1.0
    else:  # rank 0 has a typo with probability EXTRA_TYPO
        flawed = sum(r < 1.0 for r in by_rank[0]) / len(by_rank[0])
        assert flawed == pytest.approx(spelling.EXTRA_TYPO, abs=0.03)
    assert all(a > b for a, b in zip(means, means[1:]))
    assert set(" ".join(r["content"] for r in task.ranked_responses(prompt, rng)).split()) <= set(task.corpus_words())


def test_label_first_completion():
    assert reviser_completion(Label.NO, "ignored") == "[No Revise]"
    assert reviser_completion(Label.MAJOR, "1 2") == "[Major Revise] 1 2"
    assert reviser_completion(None, "1 2") == "1 2"


def test_loss_only_on_completion(base_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_model)
    prompt = reviser_prompt(sorting.prompt_messages([2, 1]), "2 1")
    ex = encode_example(tok, prompt, "[Major Revise] 1 2", 512)
    n_completion = sum(label != -100 for label in ex["labels"])
    assert n_completion == 4  # label token, "1", "2", EOS
    assert ex["labels"][-n_completion:] == ex["input_ids"][-n_completion:]
    assert tok.convert_ids_to_tokens(ex["input_ids"][-n_completion])  == "[Major Revise]"


@pytest.mark.parametrize("response, reward", [
    ("7 + 7 = 14", 1.0), ("The answer: 14.", 1.0), ("14.0", 1.0), ("#### 14", 1.0),
    ("7 + 7 = 12\nso 12", pytest.approx(0.5 * (1 - 2 / 14))), ("no idea", 0.0), ("1,400", 0.0), ("-20", 0.0),
])
def test_the_number_critic_reads_the_final_number_against_the_metadata_answer(response, reward):
    from seft.tasks.answers import number

    assert number([{"role": "user", "content": "What is 7 + 7?"}], response, answer="14") == reward


@pytest.mark.parametrize("response, reward", [
    ("The capital of Colombia is Bogotá.", 1.0), ("BOGOTA", 1.0), ("It is Bogota, D.C., of course", 1.0),
    ("Bogotazo", 0.0), ("Medellín", 0.0), ("", 0.0),
])
def test_the_mentions_critic_finds_the_answer_as_whole_words(response, reward):
    from seft.tasks.answers import mentions

    prompt = [{"role": "user", "content": "What is the capital of Colombia?"}]
    assert mentions(prompt, response, answer="Bogota") == reward


def test_capitals_rows_carry_their_answer_and_the_example_data_is_theirs():
    import json

    from helpers import ROOT
    from seft.tasks import capitals
    from seft.tasks.answers import mentions

    questions, prompts = capitals.questions(), capitals.prompts()
    for row in questions:  # a question never gives its own answer away
        assert row["metadata"]["answer"] and not mentions([], row["prompt"], row["metadata"]["answer"]), row
    assert mentions([], "The capital of Yemen is Sana'a.", "Sanaa") == 1.0
    assert len({r["prompt"] for r in questions + prompts}) == len(questions) + len(prompts)  # evolution: other places
    assert len({r["id"] for r in questions + prompts}) == len(questions) + len(prompts)
    for name, rows in (("questions.jsonl", questions), ("prompts.jsonl", prompts)):  # what the module writes
        lines = (ROOT / "examples" / "data" / "capitals" / name).read_text().splitlines()
        assert [json.loads(line) for line in lines] == rows
