"""fairseq HuBERT -> transformers: layer features equal torchaudio's independent import of the same
checkpoint (torchaudio's fairseq key map and its own HuBERT), post-norm (mHuBERT base) and pre-norm."""
import re

import numpy as np
import pytest
import torch
from torchaudio.models import wav2vec2_model
from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict

from sepalm_espnet.bin.convert_fairseq_hubert import main as convert_main
from sepalm_espnet.corrector.fairseq_hubert import convert_fairseq_hubert, parse_conv_layers
from sepalm_espnet.corrector.units import HubertFeatureExtractor

CONV_SPEC = "[(16, 10, 5)] + [(16, 3, 2)] * 2"
# torchaudio name -> fairseq name, to write a checkpoint as fairseq saves it (torchaudio's own
# map, checked below, confirms every name).
TORCHAUDIO_TO_FAIRSEQ = (
    (r"feature_extractor\.conv_layers\.0\.layer_norm\.(\w+)$", "group", r"feature_extractor.conv_layers.0.2.\1"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(\w+)$", "layer", r"feature_extractor.conv_layers.\1.2.1.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(\w+)$", None, r"feature_extractor.conv_layers.\1.0.\2"),
    (r"encoder\.feature_projection\.projection\.(\w+)$", None, r"post_extract_proj.\1"),
    (r"encoder\.feature_projection\.layer_norm\.(\w+)$", None, r"layer_norm.\1"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$", None,
     "encoder.pos_conv.0.weight_g"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$", None,
     "encoder.pos_conv.0.weight_v"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.(\w+)$", None, r"encoder.pos_conv.0.\1"),
    (r"encoder\.transformer\.layer_norm\.(\w+)$", None, r"encoder.layer_norm.\1"),
    (r"encoder\.transformer\.layers\.(\d+)\.attention\.(\w+)\.(\w+)$", None, r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.(\w+)$", None, r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(\w+)$", None, r"encoder.layers.\1.fc1.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.(\w+)$", None, r"encoder.layers.\1.fc2.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.(\w+)$", None, r"encoder.layers.\1.final_layer_norm.\2"),
)
VARIANTS = {  # mHuBERT base (SpeechGPT's) and the large layout
    "post_norm": {"extractor_mode": "default", "layer_norm_first": False},
    "pre_norm": {"extractor_mode": "layer_norm", "layer_norm_first": True},
}


def fairseq_name(name, norm):
    for pattern, only_for, replacement in TORCHAUDIO_TO_FAIRSEQ:
        if re.match(pattern, name) and only_for in (None, norm):
            return re.sub(pattern, replacement, name)
    raise AssertionError(name)


def fairseq_checkpoint(path, variant, normalize=False):
    """A random tiny HuBERT saved as fairseq does, and torchaudio's model loaded from it."""
    torch.manual_seed(0)
    mode = VARIANTS[variant]
    reference = wav2vec2_model(
        extractor_mode="group_norm" if mode["extractor_mode"] == "default" else "layer_norm",
        extractor_conv_layer_config=parse_conv_layers(CONV_SPEC), extractor_conv_bias=False,
        encoder_embed_dim=24, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=8, encoder_pos_conv_groups=2,
        encoder_num_layers=2, encoder_num_heads=2, encoder_attention_dropout=0.0, encoder_ff_interm_features=48,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=mode["layer_norm_first"],
        encoder_layer_drop=0.0, aux_num_out=None).eval()
    norm = "group" if mode["extractor_mode"] == "default" else "layer"
    state = {fairseq_name(k, norm): torch.randn_like(v) * 0.3 for k, v in reference.state_dict().items()}
    state.update({"mask_emb": torch.randn(24), "label_embs_concat": torch.randn(10, 8),
                  "final_proj.weight": torch.randn(8, 24), "final_proj.bias": torch.randn(8)})
    converted = _convert_state_dict(state)
    converted.pop("label_embs_concat")
    for old, new in (("weight_g", "original0"), ("weight_v", "original1")):  # torchaudio's map predates
        prefix = "encoder.transformer.pos_conv_embed.conv."                # its parametrized weight norm
        converted[f"{prefix}parametrizations.weight.{new}"] = converted.pop(prefix + old)
    reference.load_state_dict(converted, strict=True)  # torchaudio's map accepts every name we wrote
    model_cfg = {"extractor_mode": mode["extractor_mode"], "conv_feature_layers": CONV_SPEC, "conv_bias": False,
                 "encoder_embed_dim": 24, "encoder_layers": 2, "encoder_attention_heads": 2,
                 "encoder_ffn_embed_dim": 48, "activation_fn": "gelu", "conv_pos": 8, "conv_pos_groups": 2,
                 "layer_norm_first": mode["layer_norm_first"]}
    torch.save({"cfg": {"model": model_cfg, "task": {"normalize": normalize}}, "model": state}, path)
    return reference


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_layers_equal_torchaudios_import_of_the_same_checkpoint(tmp_path, variant):
    reference = fairseq_checkpoint(tmp_path / "hubert.pt", variant)
    convert_main(["--checkpoint", str(tmp_path / "hubert.pt"), "--output_dir", str(tmp_path / "hf")])
    wav = np.random.default_rng(1).standard_normal(4000).astype(np.float32) * 0.1
    with torch.inference_mode():
        expected, _ = reference.extract_features(torch.from_numpy(wav)[None])
    # Pre-norm: the last layer's output gets the final layer norm in transformers only.
    for layer in (1, 2) if variant == "post_norm" else (1,):
        ours = HubertFeatureExtractor(str(tmp_path / "hf"), layer=layer).extract(wav)
        assert ours.shape == expected[layer - 1][0].shape
        np.testing.assert_allclose(ours, expected[layer - 1][0].numpy(), atol=2e-5)
    assert not HubertFeatureExtractor(str(tmp_path / "hf"), layer=1).normalize


def test_the_checkpoints_waveform_normalisation_is_kept(tmp_path):
    fairseq_checkpoint(tmp_path / "hubert.pt", "post_norm", normalize=True)
    convert_fairseq_hubert(tmp_path / "hubert.pt", tmp_path / "hf")
    assert HubertFeatureExtractor(str(tmp_path / "hf"), layer=1).normalize


def test_an_unknown_parameter_or_config_is_named_and_nothing_is_written(tmp_path):
    fairseq_checkpoint(tmp_path / "hubert.pt", "post_norm")
    checkpoint = torch.load(tmp_path / "hubert.pt", weights_only=False)
    checkpoint["model"]["encoder.adapter.weight"] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"extra\.pt: parameter 'encoder\.adapter\.weight'"):
        convert_fairseq_hubert(tmp_path / "extra.pt", tmp_path / "out")
    del checkpoint["model"]["encoder.adapter.weight"], checkpoint["cfg"]["model"]["conv_pos"]
    torch.save(checkpoint, tmp_path / "no_conv_pos.pt")
    with pytest.raises(ValueError, match=r"lacks \['conv_pos'\]"):
        convert_fairseq_hubert(tmp_path / "no_conv_pos.pt", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extra.pt", "hubert.pt", "no_conv_pos.pt"]
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="exists"):
        convert_fairseq_hubert(tmp_path / "hubert.pt", tmp_path / "out")


def test_conv_spec_is_parsed_without_eval():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == (
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2)
    with pytest.raises(ValueError, match="only lists"):
        parse_conv_layers("[(512, 10, __import__('os').getpid())]")
