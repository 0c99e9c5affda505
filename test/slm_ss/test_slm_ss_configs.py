"""The SLM-SS configs of conf/tuning build the sizes their headers state (the paper one on the
meta device, its WavLM replaced by a conv encoder of WavLM-large's width: nothing is allocated)."""
from pathlib import Path

import torch
import yaml

from sepalm_espnet.slm_ss.model import SlmSsModel

CONF = Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/sepalm1/conf/tuning"
WAVLM_LARGE_WIDTH = 1024


def model_conf(name: str) -> dict:
    config = yaml.safe_load((CONF / f"train_slm_ss_{name}.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "slm_ss"
    return config["model_conf"]


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_mini_config_is_1_4m_parameters_and_matches_the_mini_codec():
    conf = model_conf("mini")
    model = SlmSsModel(**conf)
    assert round(parameters(model) / 1e6, 1) == 1.4
    codec = yaml.safe_load((CONF / "train_codec_dac_mini.yaml").read_text(encoding="utf-8"))["arch"]
    assert (conf["num_codebooks"], conf["codebook_size"]) == (codec["n_codebooks"], codec["codebook_size"])


def test_paper_config_is_489m_parameters_besides_wavlm_large():
    conf = model_conf("paper")
    assert conf["encoder"] == "wavlm" and conf["encoder_conf"]["freeze"] is True
    conf = dict(conf, encoder="conv", encoder_conf=dict(output_dim=WAVLM_LARGE_WIDTH))
    with torch.device("meta"):
        model = SlmSsModel(**conf)
    parts = {name: parameters(module) for name, module in model.named_children()}
    trained = sum(n for name, n in parts.items() if name != "encoder")
    print(f"SLM-SS paper config: {trained / 1e6:.1f}M besides the mixture encoder: {parts}")
    assert round(trained / 1e6, 1) == 489.2
    assert round(parts["ar"] / 1e6, 1) == 270.9 and round(parts["nar"] / 1e6, 1) == 166.9
