"""The four services on a real gRPC server on loopback, with tiny real models."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import grpc
import torch
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from seft.chat import reviser_prompt
from seft.client import CriticClient, GeneratorClient, LabellerClient, ReviserClient
from seft.labelling import Label, Rule
from seft.settings import Sampling
from seft.v1 import (common_pb2, critic_pb2, critic_pb2_grpc, generator_pb2, generator_pb2_grpc, labeller_pb2,
                     labeller_pb2_grpc, reviser_pb2, reviser_pb2_grpc)
from seft_services.backends.critics import RuleCritic
from seft_services.backends.transformers_lm import CausalLM, TransformersGenerator, TransformersReviser
from seft_services.protocol import Limits, SamplingParams
from seft_services.server import Server

from helpers import Served, needs_cuda, sort_prompts

pytestmark = pytest.mark.integration
RULE = "seft.tasks.sorting:score"
MAX_BATCH = 4


@pytest.fixture(scope="module")
def server(base_model, no_revise_reviser):
    critic = RuleCritic(RULE)
    srv = Server({"generator": TransformersGenerator(CausalLM(str(base_model))),
                  "reviser": TransformersReviser(CausalLM(str(no_revise_reviser))),
                  "critic": critic, "labeller": critic}, limits=Limits(max_batch=MAX_BATCH, max_new_tokens=64)).start()
    yield srv
    srv.stop(grace=1)


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.endpoint) as ch:
        yield ch


def msgs(text="Sort ascending : 3 1 2"):
    return [common_pb2.ChatMessage(role="user", content=text)]


def test_health_serving_for_every_service(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", "seft.v1.Generator", "seft.v1.Reviser", "seft.v1.Critic", "seft.v1.Labeller"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_four_services_and_describes_them(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    assert {"seft.v1.Generator", "seft.v1.Reviser", "seft.v1.Critic", "seft.v1.Labeller"} <= services
    assert "grpc.health.v1.Health" in services
    from google.protobuf.descriptor_pool import DescriptorPool
    pool = DescriptorPool(db)
    revise = pool.FindServiceByName("seft.v1.Reviser").FindMethodByName("Revise")
    assert revise.input_type.full_name == "seft.v1.ReviseRequest"


def test_generate_returns_one_generation_per_prompt_with_usage(server):
    prompts = [p for p, _ in sort_prompts(3)]
    with GeneratorClient(server.endpoint, batch_size=MAX_BATCH) as client:
        stub = generator_pb2_grpc.GeneratorStub(client.channel)
        resp = stub.Generate(generator_pb2.GenerateRequest(
            request_id="r1", prompts=[generator_pb2.Prompt(messages=msgs(p[0]["content"])) for p in prompts],
            sampling=common_pb2.SamplingParams(max_new_tokens=5, temperature=0.0)))
        assert resp.request_id == "r1" and len(resp.generations) == 3
        assert all(0 < g.usage.completion_tokens <= 5 and g.usage.prompt_tokens > 5 for g in resp.generations)
        # the typed client batches (limit 4) and keeps order; greedy is deterministic
        texts = client.generate(prompts * 3, seed=1)
        assert len(texts) == 9 and texts[:3] == texts[3:6] == texts[6:]


def test_no_revise_returns_the_original_verbatim_after_only_the_label(server, no_revise_reviser):
    originals = ["  3 1 2 ", "weird ünïcode ✓ text\twith tabs", "1 2 3", ""]
    stub = reviser_pb2_grpc.ReviserStub(grpc.insecure_channel(server.endpoint))
    resp = stub.Revise(reviser_pb2.ReviseRequest(
        request_id="r2", items=[reviser_pb2.RevisionItem(prompt=msgs(), original=o) for o in originals]))
    from transformers import AutoTokenizer
    label_tokens = len(AutoTokenizer.from_pretrained(no_revise_reviser)("[No Revise]", add_special_tokens=False)["input_ids"])
    for original, rev in zip(originals, resp.revisions):
        assert rev.label == common_pb2.NO_REVISE
        assert rev.text == original and rev.revised is False
        assert rev.usage.completion_tokens <= label_tokens


def test_major_revise_generates_after_the_label(major_reviser):
    reviser = TransformersReviser(CausalLM(str(major_reviser)))
    out = reviser.revise([(msgs_dict(), "3 1 2")], SamplingParams(max_new_tokens=8))[0]
    assert out.label is Label.MAJOR and out.revised is True
    assert out.text == "1 2 3" and out.completion_tokens == 1 + 3  # label + three numbers (EOS not counted)
    plain = TransformersReviser(CausalLM(str(major_reviser)), label_first=False)
    assert plain.revise([(msgs_dict(), "3 1 2")], SamplingParams(max_new_tokens=8))[0].label is None


def test_generation_continued_from_a_prefill_equals_generation_from_scratch(base_model):
    """The adaptive reviser generates its revisions from the label pass's KV cache: some rows of a
    left-padded batch (reordered), each with one more token. Each row's next-token distribution
    must be the one that row alone, computed from its whole sequence, has; and so its generation."""
    lm = CausalLM(str(base_model))
    seqs = [lm.encode(msgs_dict() + [{"role": "user", "content": " ".join(map(str, range(n)))}]) for n in (1, 6, 3, 9)]
    logp, prefill = lm.prefill(seqs)
    for i, s in enumerate(seqs):
        assert torch.allclose(logp[i], lm.prefill([s])[0][0], atol=1e-5)
    rows, extra = [3, 0], lm.tokenizer.convert_tokens_to_ids(["[Major Revise]", "[Minor Revise]"])
    step = prefill.continue_with(rows, extra)
    with torch.inference_mode():  # one decode step from the cache, as generate takes it
        logits = lm.model(input_ids=step.ids[:, -1:], attention_mask=step.mask, cache=step.cache,
                          position_ids=step.mask.sum(-1, keepdim=True) - 1).logits[:, -1]
    step_logp = torch.log_softmax(logits, -1)
    for k, (r, tok) in enumerate(zip(rows, extra)):
        alone = lm.prefill([seqs[r] + [tok]])[0][0]
        assert torch.allclose(step_logp[k], alone, atol=1e-5)
        assert not torch.allclose(step_logp[k], lm.prefill([seqs[rows[1 - k]] + [tok]])[0][0], atol=1e-3)
    params = SamplingParams(max_new_tokens=6, temperature=0.0)
    continued = lm.generate(lm.prefill(seqs)[1].continue_with(rows, extra), params)
    assert continued == [lm.generate([seqs[r] + [tok]], params)[0] for r, tok in zip(rows, extra)]


def test_prefix_caching_computes_a_shared_opening_once_and_answers_as_without(base_model):
    """A call's prompts share the chat template's opening and the task's instruction: its KV cache
    is computed once, each row computes only the rest, and the answers and next-token
    distributions are those of the same model without the cache."""
    lm, plain = CausalLM(str(base_model)), CausalLM(str(base_model), prefix_caching=False)
    computed = []  # the tokens of each forward pass
    lm.model.get_input_embeddings().register_forward_hook(lambda module, args, out: computed.append(args[0].numel()))
    seqs = [lm.encode(p) for p, _ in sort_prompts(8)]
    opening = os.path.commonprefix(seqs)
    logp, _ = lm.prefill(seqs)
    assert lm.prefix == opening and len(opening) >= lm.MIN_PREFIX
    assert computed == [len(opening), len(seqs) * (max(map(len, seqs)) - len(opening))]  # once, then the rest
    assert torch.allclose(logp, plain.prefill(seqs)[0], atol=1e-5)
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    assert lm.generate(seqs, greedy) == plain.generate(seqs, greedy)
    computed.clear()
    assert lm.generate([seqs[3]], greedy) == plain.generate([seqs[3]], greedy)
    assert computed[0] == len(seqs[3]) - len(opening)  # a lone prompt starts from the cached opening too
    other = [lm.encode(reviser_prompt(p, "1 2")) for p, _ in sort_prompts(4, seed=1)]  # another opening
    assert lm.generate(other, greedy) == plain.generate(other, greedy)
    assert lm.prefix == os.path.commonprefix(other) != opening
    assert lm.generate(seqs[:2], greedy) == plain.generate(seqs[:2], greedy)  # and back
    assert lm.prefix == os.path.commonprefix(seqs[:2])


def msgs_dict():
    return [{"role": "user", "content": "Sort ascending : 3 1 2"}]


def test_critic_score_and_pairs(server):
    prompt = msgs_dict()
    with CriticClient(server.endpoint) as client:
        assert client.score([(prompt, "1 2 3"), (prompt, "3 1 2"), (prompt, "")]) == [1.0, 0.0, 0.0]
    stub = critic_pb2_grpc.CriticStub(grpc.insecure_channel(server.endpoint))
    resp = stub.ScorePairs(critic_pb2.ScorePairsRequest(items=[
        critic_pb2.PairItem(prompt=msgs(), original="2 1 3", revised="1 2 3")]))
    s = resp.scores[0]
    assert (s.reward_original, s.reward_revised) == (pytest.approx(1 / 3), 1.0)
    assert s.benefit == pytest.approx(2 / 3)


def test_a_records_metadata_reaches_a_rule_critic_as_keywords():
    srv = Server({"critic": RuleCritic("seft.tasks.answers:words"), "labeller": RuleCritic("seft.tasks.answers:exact")},
                 limits=Limits(max_batch=MAX_BATCH)).start()
    prompt = msgs_dict()
    try:
        with CriticClient(srv.endpoint, batch_size=2) as client:
            rewards = client.score([(prompt, "so #### 1 2 3", {"answer": "1 2 3"}),
                                    (prompt, "1 2\n3 2 1", {"answer": "1 2 3"}),
                                    (prompt, "Answer: blue", {"answer": "Blue sky"})])
        assert rewards == [1.0, pytest.approx(1 / 3), 0.5]
        with LabellerClient(srv.endpoint) as client:
            out = client.label([("a", prompt, "4", "3", {"answer": 3}), ("b", prompt, "3", "3", {"answer": 3})],
                               Rule(alpha=0.3, beta=0.9, p=1.0))
        assert [(o.reward_original, o.reward_revised, o.label) for o in out] == [(0.0, 1.0, Label.MAJOR),
                                                                                 (1.0, 1.0, Label.NO)]
        stub = critic_pb2_grpc.CriticStub(grpc.insecure_channel(srv.endpoint))  # a critic that needs it, without it
        code, _ = _code(stub.Score, critic_pb2.ScoreRequest(items=[critic_pb2.ScoreItem(prompt=msgs(), response="1")]))
        assert code == grpc.StatusCode.INTERNAL
    finally:
        srv.stop(grace=1)


def test_labeller_applies_the_rule(server):
    prompt = msgs_dict()
    items = [("a", prompt, "3 1 2", "1 2 3"),   # benefit +1.0 > beta -> major
             ("b", prompt, "1 2 3", "1 2 3"),   # 0 < alpha -> no
             ("c", prompt, "1 3 2", "1 2 3")]   # +2/3 -> minor (alpha 0.3 <= b <= beta 0.9)
    with LabellerClient(server.endpoint) as client:
        out = client.label(items, Rule(alpha=0.3, beta=0.9, p=1.0))
        assert [o.label for o in out] == [Label.MAJOR, Label.NO, Label.MINOR]
        assert out[0].benefit == pytest.approx(1.0) and not any(o.relabelled for o in out)
        flipped = client.label(items, Rule(alpha=0.3, beta=0.9, p=0.0, relabel_to=Label.MAJOR))
        assert [o.label for o in flipped] == [Label.MAJOR] * 3 and [o.relabelled for o in flipped] == [False, True, True]


def _code(call, request):
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value.code(), err.value.details()


def bad_requests():
    gen, rev, cri, lab = generator_pb2, reviser_pb2, critic_pb2, labeller_pb2
    good_item = rev.RevisionItem(prompt=msgs(), original="1 2")
    rule = lab.LabelRule(alpha=0.3, beta=1.0, p=0.8, relabel_to=common_pb2.MAJOR_REVISE)
    label_item = lab.LabelItem(id="x", prompt=msgs(), original="1", revised="2")
    return [
        ("Generate", gen.GenerateRequest(), "prompts: empty batch"),
        ("Generate", gen.GenerateRequest(prompts=[gen.Prompt()]), "prompts[0].messages: empty prompt"),
        ("Generate", gen.GenerateRequest(prompts=[gen.Prompt(messages=msgs("   "))]), "non-empty user message"),
        ("Generate", gen.GenerateRequest(prompts=[gen.Prompt(messages=[common_pb2.ChatMessage(role="robot", content="x")])]), "role"),
        ("Generate", gen.GenerateRequest(prompts=[gen.Prompt(messages=msgs())] * (MAX_BATCH + 1)), "exceeds the limit of 4"),
        ("Generate", gen.GenerateRequest(prompts=[gen.Prompt(messages=msgs())],
                                         sampling=common_pb2.SamplingParams(temperature=math.nan)), "sampling.temperature"),
        ("Generate", gen.GenerateRequest(prompts=[gen.Prompt(messages=msgs())],
                                         sampling=common_pb2.SamplingParams(temperature=-1)), "sampling.temperature"),
        ("Generate", gen.GenerateRequest(prompts=[gen.Prompt(messages=msgs())],
                                         sampling=common_pb2.SamplingParams(top_p=0)), "sampling.top_p"),
        ("Generate", gen.GenerateRequest(prompts=[gen.Prompt(messages=msgs())],
                                         sampling=common_pb2.SamplingParams(max_new_tokens=0)), "sampling.max_new_tokens"),
        ("Revise", rev.ReviseRequest(), "items: empty batch"),
        ("Revise", rev.ReviseRequest(items=[rev.RevisionItem(original="1")]), "items[0].prompt: empty prompt"),
        ("Revise", rev.ReviseRequest(items=[good_item] * (MAX_BATCH + 1)), "exceeds the limit"),
        ("Score", cri.ScoreRequest(), "items: empty batch"),
        ("Score", cri.ScoreRequest(items=[cri.ScoreItem(response="1")]), "items[0].prompt: empty prompt"),
        ("Score", cri.ScoreRequest(items=[cri.ScoreItem(prompt=msgs(), response="1")] * (MAX_BATCH + 1)), "exceeds"),
        ("Score", cri.ScoreRequest(items=[cri.ScoreItem(prompt=msgs(), response="1", metadata="{oops")]),
         "items[0].metadata: not valid JSON"),
        ("Score", cri.ScoreRequest(items=[cri.ScoreItem(prompt=msgs(), response="1", metadata="[1]")]),
         "items[0].metadata: must be a JSON object, got list"),
        ("ScorePairs", cri.ScorePairsRequest(), "items: empty batch"),
        ("ScorePairs", cri.ScorePairsRequest(items=[cri.PairItem(original="1", revised="2")]), "empty prompt"),
        ("Label", lab.LabelRequest(items=[label_item]), "rule: required"),
        ("Label", lab.LabelRequest(rule=rule), "items: empty batch"),
        ("Label", lab.LabelRequest(items=[lab.LabelItem(id="x", prompt=msgs(), original="1", revised="2", metadata="7")],
                                   rule=rule), "items[0].metadata: must be a JSON object, got int"),
        ("Label", lab.LabelRequest(items=[label_item, label_item], rule=rule), "unique"),
        ("Label", lab.LabelRequest(items=[lab.LabelItem(prompt=msgs(), original="1", revised="2")], rule=rule), "items[0].id: empty"),
        ("Label", lab.LabelRequest(items=[label_item], rule=lab.LabelRule(alpha=2, beta=1, p=0.5, relabel_to=1)), "must not exceed"),
        ("Label", lab.LabelRequest(items=[label_item], rule=lab.LabelRule(alpha=0.1, beta=1, p=0.5)), "rule.relabel_to"),
        ("Label", lab.LabelRequest(items=[label_item], rule=lab.LabelRule(alpha=0.1, beta=1, p=math.nan, relabel_to=1)), "finite"),
    ]


@pytest.mark.parametrize("method, request_, reason", bad_requests(), ids=lambda x: x if isinstance(x, str) else "")
def test_bad_input_is_invalid_argument_with_a_reason(channel, method, request_, reason):
    stub = {"Generate": generator_pb2_grpc.GeneratorStub, "Revise": reviser_pb2_grpc.ReviserStub,
            "Score": critic_pb2_grpc.CriticStub, "ScorePairs": critic_pb2_grpc.CriticStub,
            "Label": labeller_pb2_grpc.LabellerStub}[method](channel)
    code, details = _code(getattr(stub, method), request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in details


def test_seft_serve_subprocess_reports_serving_and_stops_on_sigterm(tmp_path):
    with Served(tmp_path, "critic", "--critic", "rule", "--callable", RULE) as served:
        with grpc.insecure_channel(served.endpoint) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="seft.v1.Critic"))
            assert status.status == health_pb2.HealthCheckResponse.SERVING
        with CriticClient(served.endpoint) as client:
            assert client.score([(msgs_dict(), "1 2 3")]) == [1.0]
        assert served.stop() == 0, served.log.read_text()[-3000:]
    assert "shutting down" in served.log.read_text()


def test_seft_serve_stops_cleanly_on_a_sigterm_the_moment_it_is_up(tmp_path):
    """The signal handlers are in place before the port file says the server is up, and they take
    no lock (a handler that set a threading.Event could deadlock the main thread entering wait())."""
    for _ in range(3):
        with Served(tmp_path, "critic", "--critic", "rule", "--callable", RULE) as served:
            assert served.stop() == 0, served.log.read_text()[-3000:]
        assert "shutting down" in served.log.read_text()


def test_seft_serve_refuses_a_bad_callable():
    proc = subprocess.run([sys.executable, "-m", "seft.cli", "serve", "critic", "--critic", "rule",
                           "--callable", "no.such.module:fn", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "cannot import" in proc.stderr


def test_typed_client_turns_a_status_into_an_error_naming_endpoint_and_reason(server):
    from seft.errors import SeftError

    with CriticClient(server.endpoint, batch_size=MAX_BATCH + 1) as client:
        with pytest.raises(SeftError, match=rf"{server.endpoint}: INVALID_ARGUMENT: items: batch of 5 exceeds"):
            client.score([(msgs_dict(), "1")] * (MAX_BATCH + 1))


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory, base_model):
    """A tiny real HF sequence-classification model (one output: the reward)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(base_model, num_labels=1)
    out = tmp_path_factory.mktemp("rm") / "model"
    LlamaForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(out)
    return out


def test_reward_model_critic_scores_and_labels(reward_model):
    from seft_services.backends.critics import load_critic

    critic = load_critic("reward-model", model=str(reward_model))
    srv = Server({"critic": critic, "labeller": critic}).start()
    try:
        prompt = msgs_dict()
        items = [(prompt, "1 2 3"), (prompt, "3 2 1"), (prompt, "1 2 3")]
        with CriticClient(srv.endpoint) as client:
            rewards = client.score(items)
            assert len(rewards) == 3 and all(math.isfinite(r) for r in rewards)
            assert rewards[0] == pytest.approx(rewards[2], abs=1e-5)  # same input, same reward, whatever the batch
            assert rewards[0] != pytest.approx(rewards[1], abs=1e-6)
            assert client.score(items[1:2]) == [pytest.approx(rewards[1], abs=1e-5)]  # padding does not change it
        with LabellerClient(srv.endpoint) as labeller:
            [out] = labeller.label([("a", prompt, "3 2 1", "1 2 3")], Rule(alpha=0.0, beta=0.0, p=1.0))
            assert out.benefit == pytest.approx(rewards[0] - rewards[1], abs=1e-5)
            assert out.label is (Label.MAJOR if out.benefit > 0 else Label.NO if out.benefit < 0 else Label.MINOR)
    finally:
        srv.stop(grace=1)


def test_force_revise_never_answers_no_revise(server):
    with ReviserClient(server.endpoint) as client:  # this reviser says [No Revise] to everything
        [kept] = client.revise([(msgs_dict(), "3 1 2")], Sampling(max_new_tokens=4, temperature=0.0))
        [forced] = client.revise([(msgs_dict(), "3 1 2")], Sampling(max_new_tokens=4, temperature=0.0),
                                 force_revise=True)
    assert kept.label is Label.NO and not kept.revised
    assert forced.label in (Label.MAJOR, Label.MINOR) and forced.revised


# -- server streaming: any number of items, answered in order in chunks of max_batch -------------
def _stream_cases():
    gen, rev, cri, lab = generator_pb2, reviser_pb2, critic_pb2, labeller_pb2
    n = 2 * MAX_BATCH + 2
    rule = lab.LabelRule(alpha=0.3, beta=0.9, p=1.0, relabel_to=common_pb2.MAJOR_REVISE)
    sampling = common_pb2.SamplingParams(max_new_tokens=3)
    return [
        (generator_pb2_grpc.GeneratorStub, "Generate", "generations",
         gen.GenerateRequest(prompts=[gen.Prompt(messages=msgs(f"Sort ascending : {i} 1")) for i in range(n)],
                             sampling=sampling)),
        (reviser_pb2_grpc.ReviserStub, "Revise", "revisions",
         rev.ReviseRequest(items=[rev.RevisionItem(prompt=msgs(), original=f"{i} 1") for i in range(n)],
                           sampling=sampling)),
        (critic_pb2_grpc.CriticStub, "Score", "rewards",
         cri.ScoreRequest(items=[cri.ScoreItem(prompt=msgs(), response=f"1 {i}") for i in range(n)])),
        (critic_pb2_grpc.CriticStub, "ScorePairs", "scores",
         cri.ScorePairsRequest(items=[cri.PairItem(prompt=msgs(), original=f"{i} 1", revised="1 2 3")
                                      for i in range(n)])),
        (labeller_pb2_grpc.LabellerStub, "Label", "results",
         lab.LabelRequest(rule=rule, items=[lab.LabelItem(id=str(i), prompt=msgs(), original=f"{i} 2 1",
                                                          revised="1 2 3") for i in range(n)])),
    ]


@pytest.mark.parametrize("stub_cls, method, field, request_", _stream_cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_streaming_answers_every_item_in_order_in_chunks(channel, stub_cls, method, field, request_):
    stub = stub_cls(channel)
    chunks = list(getattr(stub, method + "Stream")(request_))
    n = len(_inputs(request_))
    assert [c.offset for c in chunks] == list(range(0, n, MAX_BATCH))
    assert [len(getattr(c, field)) for c in chunks] == [MAX_BATCH, MAX_BATCH, n - 2 * MAX_BATCH]
    for c in chunks:  # each chunk is what a unary call on the same items answers
        part = type(request_)()
        part.CopyFrom(request_)
        del _inputs(part)[:c.offset]
        del _inputs(part)[len(getattr(c, field)):]
        assert list(getattr(getattr(stub, method)(part), field)) == list(getattr(c, field))


def _inputs(request_):
    return request_.prompts if isinstance(request_, generator_pb2.GenerateRequest) else request_.items


def test_typed_client_streams_in_order(server):
    items = [(msgs_dict(), f"{i} 1") for i in range(2 * MAX_BATCH + 1)]
    with ReviserClient(server.endpoint, batch_size=MAX_BATCH) as client:
        streamed = list(client.revise_stream(items, Sampling(max_new_tokens=3)))
        assert streamed == client.revise(items, Sampling(max_new_tokens=3))
    assert [r.text for r in streamed] == [o for _, o in items]  # this reviser keeps every original


def test_streaming_validates_every_item_before_answering(channel):
    stub = critic_pb2_grpc.CriticStub(channel)
    items = [critic_pb2.ScoreItem(prompt=msgs(), response="1")] * (3 * MAX_BATCH) + [critic_pb2.ScoreItem(response="1")]
    code, details = _code(lambda r: list(stub.ScoreStream(r)), critic_pb2.ScoreRequest(items=items))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"items[{3 * MAX_BATCH}].prompt: empty prompt" in details


# -- a client that knows nothing but what server reflection tells it --------------------------
REFLECTION_REQUESTS = {  # JSON per request type, as a grpcurl user would write it
    "seft.v1.GenerateRequest": {"prompts": [{"messages": [{"role": "user", "content": "Sort ascending : 2 1"}]}],
                                "sampling": {"maxNewTokens": 3}},
    "seft.v1.ReviseRequest": {"items": [{"prompt": [{"role": "user", "content": "Sort ascending : 2 1"}],
                                         "original": "2 1"}]},
    "seft.v1.ScoreRequest": {"items": [{"prompt": [{"role": "user", "content": "Sort ascending : 2 1"}],
                                        "response": "1 2"}]},
    "seft.v1.ScorePairsRequest": {"items": [{"prompt": [{"role": "user", "content": "Sort ascending : 2 1"}],
                                             "original": "2 1", "revised": "1 2"}]},
    "seft.v1.LabelRequest": {"items": [{"id": "a", "prompt": [{"role": "user", "content": "Sort ascending : 2 1"}],
                                        "original": "2 1", "revised": "1 2"}],
                             "rule": {"alpha": 0.3, "beta": 0.9, "p": 1.0, "relabelTo": "MAJOR_REVISE"}},
}


def test_a_reflection_only_client_calls_every_method(channel):
    """No generated code: service, method and message types all come from server reflection."""
    from google.protobuf import json_format
    from google.protobuf.descriptor_pool import DescriptorPool
    from google.protobuf.message_factory import GetMessageClass

    db = ProtoReflectionDescriptorDatabase(channel)
    pool = DescriptorPool(db)
    answers = {}
    for service_name in sorted(s for s in db.get_services() if s.startswith("seft.v1.")):
        for method in pool.FindServiceByName(service_name).methods:
            req_cls, resp_cls = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
            request = json_format.ParseDict({**REFLECTION_REQUESTS[method.input_type.full_name], "requestId": method.name},
                                            req_cls())
            path = f"/{service_name}/{method.name}"
            if method.server_streaming:
                call = channel.unary_stream(path, request_serializer=req_cls.SerializeToString,
                                            response_deserializer=resp_cls.FromString)
                replies = [json_format.MessageToDict(r) for r in call(request, timeout=30)]
            else:
                call = channel.unary_unary(path, request_serializer=req_cls.SerializeToString,
                                           response_deserializer=resp_cls.FromString)
                replies = [json_format.MessageToDict(call(request, timeout=30))]
            assert all(r["requestId"] == method.name for r in replies)
            answers[method.name] = replies[0]
    assert sorted(answers) == ["Generate", "GenerateStream", "Label", "LabelStream", "Revise", "ReviseStream",
                               "Score", "ScorePairs", "ScorePairsStream", "ScoreStream"]
    assert answers["Score"]["rewards"] == answers["ScoreStream"]["rewards"] == [1.0]
    assert answers["Revise"]["revisions"][0]["label"] == "NO_REVISE"
    assert answers["Label"]["results"][0]["label"] == "MAJOR_REVISE"
    assert answers["ScorePairs"]["scores"][0]["benefit"] == pytest.approx(1.0)
    assert len(answers["GenerateStream"]["generations"]) == 1


def test_invalid_utf8_in_a_text_field_is_invalid_argument(channel):
    """protobuf refuses strings that are not UTF-8; the service says so instead of a bare INTERNAL."""
    good = reviser_pb2.ReviseRequest(request_id="u", items=[reviser_pb2.RevisionItem(prompt=msgs(), original="XYZ")])
    raw = good.SerializeToString().replace(b"XYZ", b"\xff\xfeZ")
    call = channel.unary_unary("/seft.v1.Reviser/Revise", request_serializer=None,
                               response_deserializer=reviser_pb2.ReviseResponse.FromString)
    code, details = _code(call, raw)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "bad UTF-8" in details and "ReviseRequest" in details
    code, details = _code(call, b"\x12\xff")  # truncated: items says 255 bytes follow, none do
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Error parsing message" in details
    assert call(good.SerializeToString()).revisions[0].text == "XYZ"  # the same bytes, valid, are served


@needs_cuda
def test_the_transformers_backend_runs_on_cuda_and_agrees_with_the_cpu(base_model):
    gpu, cpu = CausalLM(str(base_model)), CausalLM(str(base_model), device="cpu")
    assert gpu.device == "cuda" and next(gpu.model.parameters()).is_cuda
    seqs = [gpu.encode(p) for p, _ in sort_prompts(16)]
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    assert gpu.generate(seqs, greedy) == cpu.generate(seqs, greedy)
