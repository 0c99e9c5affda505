"""Classifier-free guidance's default: the model's own scale, from its training config."""
from pathlib import Path

import pytest
import torch
import yaml

from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
from sepalm_espnet.synthesizer.layers import SynthesisOptions, check_guidance
from sepalm_espnet.synthesizer.masked import MaskedSynthesizer

CONF_DIR = Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/sepalm1/conf/tuning"
Q, B = 2, 16
LAYERS = dict(d_model=16, nhead=2, num_layers=1, dim_feedforward=32, dropout=0.0)


def build(kind, **conf):
    torch.manual_seed(0)
    if kind == "ar_nar":
        return ArNarSynthesizer(6, num_codebooks=Q, codebook_size=B, **LAYERS, **conf).eval()
    return MaskedSynthesizer(num_codebooks=Q, codebook_size=B, condition="semantic", semantic_vocab_size=6,
                             inference_steps=[3, 1], **LAYERS, **conf).eval()


@pytest.mark.parametrize("kind", ["ar_nar", "masked"])
def test_unset_guidance_is_the_model_s_and_a_given_one_overrides_it(kind):
    est = torch.randint(0, B, (2, 7, Q))
    condition = torch.randint(0, 6, (2, 5))
    inputs = dict(est_tokens=est, est_tokens_lengths=torch.tensor([7, 5]))
    name = "phonemes" if kind == "ar_nar" else "semantic"
    inputs.update({name: condition, f"{name}_lengths": torch.tensor([5, 4])})
    model = build(kind, guidance_scale=20.0)  # large: an untrained model barely reads its condition
    generate = lambda **options: model.generate(**inputs, options=SynthesisOptions(temperature=1.0, **options))  # sampled, seeded
    default, guided, unguided = generate(), generate(guidance_scale=20.0), generate(guidance_scale=1.0)
    assert all(torch.equal(a, b) for a, b in zip(default, guided))
    assert not all(torch.equal(a, b) for a, b in zip(default, unguided))
    assert SynthesisOptions().guidance(model.guidance_scale) == 20.0
    assert build(kind).guidance_scale == 1.0  # a model built without one: guidance off


def test_guidance_without_condition_dropout_or_out_of_range_is_refused():
    with pytest.raises(ValueError, match="needs cond_drop_prob > 0"):
        check_guidance(1.5, 0.0)
    with pytest.raises(ValueError, match="finite number >= 0"):
        check_guidance(float("nan"), 0.1)
    assert check_guidance(1.0, 0.0) == 1.0
    with pytest.raises(ValueError, match="needs cond_drop_prob"):
        build("masked", guidance_scale=2.0, cond_drop_prob=0.0)


@pytest.mark.parametrize("config", sorted(CONF_DIR.glob("train_syn_*.yaml")), ids=lambda p: p.name)
def test_recipe_configs_that_train_for_guidance_decode_with_it(config):
    conf = yaml.safe_load(config.read_text())["model_conf"]
    if conf.get("cond_drop_prob", 0.1) > 0:  # the models' default is 0.1
        assert conf.get("guidance_scale", 1.0) != 1.0, f"{config.name} trains the condition-less pass and never uses it"
