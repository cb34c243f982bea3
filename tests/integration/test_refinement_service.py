"""Inference-time self-refinement through the Generator service (SELF, EVOLVE), with a real tiny
model that answers "1 2 3" to every sort prompt and, asked to refine an answer, always gives the
feedback "wrong at 1" and the refinement "3 2 1": worse than "1 2 3" for a permutation of 1 2 3."""

from __future__ import annotations

import grpc
import pytest

from seft.client import CriticClient, GeneratorClient
from seft.errors import SeftError
from seft.recipes.self_evolution import Refine
from seft.settings import Sampling
from seft.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from seft_services.backends.critics import RuleCritic
from seft_services.backends.transformers_lm import CausalLM, TransformersGenerator
from seft_services.server import Server

from helpers import Served, sort_prompts

pytestmark = pytest.mark.integration
RULE = "seft.tasks.sorting:score"
GREEDY = Sampling(max_new_tokens=24, temperature=0.0)
PERMUTATION = [{"role": "user", "content": "Sort ascending : 3 1 2"}]  # "1 2 3" is right, "3 2 1" scores 1/3


@pytest.fixture(scope="module")
def refiner(tmp_path_factory):
    from seft import refinement
    from seft.spec import TinyModel
    from seft.tasks import FEEDBACK_WORDS, sorting
    from seft.tinymodel import build_model, build_tokenizer, quick_sft

    words = sorting.corpus_words() + refinement.format_words() + FEEDBACK_WORDS
    base = build_model(build_tokenizer(words), TinyModel(hidden_size=64, intermediate_size=128), 0,
                       tmp_path_factory.mktemp("refiner-base") / "model")
    examples = []
    for prompt, nums in sort_prompts(48):
        examples.append((prompt, "1 2 3"))
        refined = refinement.refine_completion("wrong at 1", "3 2 1")
        for answer in (" ".join(map(str, nums)), "1 2 3", "3 2 1"):
            examples.append((refinement.refine_prompt(prompt, answer), refined))
    return quick_sft(base, examples, tmp_path_factory.mktemp("refiner") / "model", steps=400, lr=3e-3)


@pytest.fixture(scope="module")
def with_critic(refiner):
    srv = Server({"generator": TransformersGenerator(CausalLM(str(refiner))), "critic": RuleCritic(RULE)}).start()
    yield srv
    srv.stop(grace=1)


@pytest.mark.parametrize("rounds", [1, 3])
def test_n_rounds_give_n_refinements_with_feedback_and_rewards(with_critic, rounds):
    with GeneratorClient(with_critic.endpoint) as gen:
        [chain] = gen.refine([PERMUTATION], Refine(rounds=rounds, keep_best=False), GREEDY)
    assert len(chain) == 1 + rounds
    assert chain[0].text == "1 2 3" and chain[0].feedback is None and chain[0].reward == 1.0
    for step in chain[1:]:  # each refinement refines the one before: the model says the same each time
        assert (step.text, step.feedback, step.kept) == ("3 2 1", "wrong at 1", True)
        assert step.reward == pytest.approx(1 / 3)


def test_keep_best_does_not_return_a_refinement_the_critic_scores_lower(with_critic):
    stub = generator_pb2_grpc.GeneratorStub(grpc.insecure_channel(with_critic.endpoint))
    request = generator_pb2.GenerateRequest(
        request_id="keep-best", prompts=[generator_pb2.Prompt(messages=[common_pb2.ChatMessage(**PERMUTATION[0])])],
        sampling=common_pb2.SamplingParams(max_new_tokens=24, temperature=0.0),
        refine=generator_pb2.RefineParams(rounds=2, keep_best=True))
    [out] = stub.Generate(request).generations
    assert out.text == "1 2 3"  # the answer stands; both worse refinements were dropped
    assert [(s.text, s.kept) for s in out.steps] == [("1 2 3", True), ("3 2 1", False), ("3 2 1", False)]
    assert out.usage.completion_tokens > 3 * 3  # the usage counts every call's tokens
    request.refine.keep_best = False
    [out] = stub.Generate(request).generations
    assert out.text == "3 2 1"  # without keep_best the last refinement is the answer


def test_a_refinement_that_scores_higher_is_kept(with_critic):
    prompt = [{"role": "user", "content": "Sort ascending : 7 3 5"}]  # "1 2 3" scores 0, "3 2 1" scores 1/3
    with GeneratorClient(with_critic.endpoint) as gen:
        [chain] = gen.refine([prompt], Refine(rounds=1, keep_best=True), GREEDY)
    assert [(s.text, s.kept) for s in chain] == [("1 2 3", True), ("3 2 1", True)]
    assert [s.reward for s in chain] == pytest.approx([0.0, 1 / 3])


def test_sampling_several_answers_refines_the_critics_best(with_critic):
    prompts = [p for p, _ in sort_prompts(3, seed=5)] + [PERMUTATION]
    sampled = Sampling(max_new_tokens=24, temperature=1.0)
    with GeneratorClient(with_critic.endpoint) as gen, CriticClient(with_critic.endpoint) as critic:
        chains = gen.refine(prompts, Refine(rounds=1, samples=4, keep_best=True), sampled, seed=3)
        rescored = critic.score([(p, c[0].text) for p, c in zip(prompts, chains)])
    assert [len(c) for c in chains] == [2] * 4
    assert [c[0].reward for c in chains] == pytest.approx(rescored)  # the rewards are the critic's


def test_bad_refine_options_get_clear_errors(with_critic, refiner):
    with GeneratorClient(with_critic.endpoint) as gen:
        with pytest.raises(SeftError, match=r"INVALID_ARGUMENT: refine.rounds: 9 is outside 0..8"):
            gen.refine([PERMUTATION], Refine.model_construct(rounds=9, samples=1, keep_best=False), GREEDY)
    bare = Server({"generator": TransformersGenerator(CausalLM(str(refiner)))}).start()  # no critic beside it
    try:
        with GeneratorClient(bare.endpoint) as gen:
            with pytest.raises(SeftError, match=r"FAILED_PRECONDITION: refine.samples > 1 and refine.keep_best "
                                                 r"need a critic"):
                gen.refine([PERMUTATION], Refine(rounds=1, keep_best=True), GREEDY)
            [chain] = gen.refine([PERMUTATION], Refine(rounds=1, keep_best=False), GREEDY)
        assert [(s.text, s.reward) for s in chain] == [("1 2 3", None), ("3 2 1", None)]  # no critic, no rewards
    finally:
        bare.stop(grace=1)


def test_seft_serve_generator_with_a_critic_refines_and_scores(tmp_path, refiner):
    with Served(tmp_path, "generator", "--model", str(refiner), "--critic", "rule", "--callable", RULE) as served:
        with GeneratorClient(served.endpoint) as gen, CriticClient(served.endpoint) as critic:
            [chain] = gen.refine([PERMUTATION], Refine(rounds=1, keep_best=True), GREEDY)
            assert critic.score([(PERMUTATION, "1 2 3")]) == [1.0]  # the critic is served beside it
        assert [(s.text, s.kept) for s in chain] == [("1 2 3", True), ("3 2 1", False)]
        assert served.stop() == 0
