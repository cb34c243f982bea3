"""scripts/label_probe.py: a reviser's labels and right outputs per rank on the spelling task's answers."""

import importlib.util
import random

import pytest

from seft.tasks import spelling
from seft_services.backends.transformers_lm import CausalLM, TransformersReviser

from helpers import ROOT

pytestmark = pytest.mark.integration
spec = importlib.util.spec_from_file_location("label_probe", ROOT / "scripts" / "label_probe.py")
label_probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(label_probe)


def test_a_reviser_that_never_revises_is_right_exactly_where_the_answers_were(no_revise_reviser):
    rng = random.Random(1)
    prompts = [spelling.prompt_messages(spelling.make_prompt(rng)) for _ in range(10)]
    result = label_probe.probe(TransformersReviser(CausalLM(str(no_revise_reviser))), prompts, seed=3)
    answers = random.Random(3)  # the probe's own answers, made again: right where they have no typo
    made = [spelling.ranked_responses(p[-1]["content"].partition(spelling.INSTRUCTION)[2].split(), answers)
            for p in prompts]
    for rank in range(7):
        labels, right = result[rank]
        assert labels == {"no": 10}
        assert right == sum(spelling.score(p, a[rank]["content"]) == 1.0 for p, a in zip(prompts, made)) / 10
    assert result[6][1] == 0.0 and result[0][1] > 0
