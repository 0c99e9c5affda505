"""SepFormer inside ESPnet's enh model: shapes, gradients, masks, size of the paper config."""
import argparse
from pathlib import Path

import pytest
import torch
import yaml

from sepalm_espnet.separator.registry import (
    EnhancementTask,
    enh_model_separate_fn,
    load_enh_model,
    separator_choices,
)
from sepalm_espnet.separator.sepformer import SepFormerSeparator

CONF_DIR = Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/sepalm1/conf/tuning"
TINY_SEPARATOR = dict(d_model=16, nhead=2, dim_feedforward=32, num_layers=1, num_blocks=1, chunk_size=10)


def config_args(config_name: str, **separator_overrides) -> dict:
    """What ESPnet's trainer would parse from our YAML (defaults from a fresh parser)."""
    args = vars(EnhancementTask.get_parser().parse_args([]))
    args.update(yaml.safe_load((CONF_DIR / config_name).read_text()))
    args["separator_conf"] = {**args["separator_conf"], **separator_overrides}
    return args


def build_from_config(config_name: str, **separator_overrides) -> torch.nn.Module:
    return EnhancementTask.build_model(argparse.Namespace(**config_args(config_name, **separator_overrides)))


def test_sepformer_is_registered_in_espnet():
    assert separator_choices.get_class("sepformer") is SepFormerSeparator


@pytest.mark.parametrize("num_spk", [1, 2, 3])
def test_forward_backward_through_espnet_enh_model(num_spk):
    torch.manual_seed(0)
    model = build_from_config("train_sep_sepformer_mini.yaml", num_spk=num_spk, **TINY_SEPARATOR)
    mixture = torch.randn(2, 4000)
    lengths = torch.tensor([4000, 4000])
    refs = {f"speech_ref{n + 1}": torch.randn(2, 4000) for n in range(num_spk)}
    loss, stats, _ = model(mixture, lengths, **refs)
    loss.backward()
    assert torch.isfinite(loss) and "si_snr_loss" in stats
    separator_grads = [p.grad for p in model.separator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in separator_grads)

    estimates, _, _, others = model.forward_enhance(mixture, lengths)
    assert len(estimates) == num_spk
    assert all(est.shape == (2, 4000) for est in estimates)
    masks = [others[f"mask_spk{n + 1}"] for n in range(num_spk)]
    assert all((mask >= 0).all() for mask in masks)


def test_paper_config_has_about_26m_parameters():
    with torch.device("meta"):
        model = build_from_config("train_sep_sepformer_paper.yaml")
    count = sum(p.numel() for p in model.parameters())
    print(f"paper SepFormer (encoder + masking net + decoder): {count / 1e6:.2f}M parameters")
    assert 25e6 <= count <= 27e6


@pytest.mark.parametrize("frames", [1, 7, 10, 25, 40])
def test_chunking_round_trip_covers_each_frame_twice(frames):
    separator = SepFormerSeparator(8, **{**TINY_SEPARATOR, "d_model": 8})
    features = torch.randn(3, 8, frames)
    chunks = separator.split_chunks(features)
    assert chunks.shape[2] == 10
    torch.testing.assert_close(separator.overlap_add(chunks, frames), 2 * features)


def test_silent_input_gives_silent_output():
    model = build_from_config("train_sep_sepformer_mini.yaml", **TINY_SEPARATOR).eval()
    with torch.no_grad():
        estimates, *_ = model.forward_enhance(torch.zeros(1, 4000), torch.tensor([4000]))
    assert all(torch.equal(est, torch.zeros(1, 4000)) for est in estimates)


def test_odd_chunk_size_is_refused():
    with pytest.raises(ValueError, match="chunk_size"):
        SepFormerSeparator(8, chunk_size=25)


def test_saved_config_and_weights_load_back_into_the_same_separator(tmp_path):
    args = config_args("train_sep_sepformer_mini.yaml", **TINY_SEPARATOR)
    model = EnhancementTask.build_model(argparse.Namespace(**args)).eval()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), tmp_path / "model.pth")

    loaded, _ = load_enh_model(tmp_path / "config.yaml", tmp_path / "model.pth")
    mixture = torch.randn(1, 4000)
    expected = enh_model_separate_fn(model)(mixture)
    assert all(torch.equal(a, b) for a, b in zip(enh_model_separate_fn(loaded)(mixture), expected))
