"""`seft validate` checks what the spec names: on the real-model example, with its models swapped
for tiny real ones (and one made quantized, as a model converted from a GGUF without care is),
its data files and its critic."""

import json
import shutil

import pytest
import yaml

from seft.cli import main

from helpers import ROOT

EXAMPLE = str(ROOT / "examples" / "smollm2-capitals.yaml")


@pytest.fixture
def models(tmp_path, base_model):
    quantized = tmp_path / "quantized"
    shutil.copytree(base_model, quantized)
    config = json.loads((quantized / "config.json").read_text())
    (quantized / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "gguf"}}))
    return {"plain": str(base_model), "quantized": str(quantized)}


def validate(capsys, *sets: str, spec: str = EXAMPLE) -> tuple[int, str]:
    code = main(["validate", spec, *[a for s in sets for a in ("--set", s)]])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_example_validates_with_loadable_models(capsys, models):
    code, out = validate(capsys, *[f"models.{m}={models['plain']}" for m in ("policy", "reviser_base", "generator")])
    assert code == 0 and "its models, data and critics load" in out


def test_a_quantized_model_that_is_trained_exits_2_naming_field_and_why(capsys, models):
    code, out = validate(capsys, f"models.policy={models['quantized']}", f"models.reviser_base={models['plain']}",
                         f"models.generator={models['quantized']}")  # the generator is only served: allowed
    assert code == 2
    assert f"models.policy: '{models['quantized']}' is quantized" in out and "quant_method 'gguf'" in out
    assert "python -m seft.gguf" in out and "models.generator" not in out


def test_every_missing_or_broken_input_is_named(capsys, models, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n{"id": "x"}\n')
    spec = yaml.safe_load(open(EXAMPLE))
    spec["critics"][0]["callable"] = "no_such_module:fn"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    code, out = validate(capsys, f"models.policy={tmp_path / 'nothing'}", f"models.reviser_base={tmp_path}",
                         f"models.generator={models['plain']}", f"ranking.prompts={bad}",
                         f"data.prompts={tmp_path / 'absent.jsonl'}", spec=str(tmp_path / "spec.yaml"))
    assert code == 2 and "5 problem(s)" in out
    assert f"models.policy: '{tmp_path / 'nothing'}' is not a directory" in out
    assert f"models.reviser_base: '{tmp_path}' has no config.json" in out
    assert f"ranking.prompts: {bad}:2: prompt: missing" in out
    assert f"data.prompts: '{tmp_path / 'absent.jsonl'}' does not exist" in out
    assert "critics[0].callable: 'no_such_module:fn': cannot import" in out and "PYTHONPATH" in out
