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


def test_paper_config_trains_on_whole_utterances_padded(tmp_path):
    """Paper §4.1: ESPnet's sampler from the paper config, over the shape files stage 3 passes,
    batches every utterance once, whole; 4 s crops stay an option of the same config."""
    from espnet2.samplers.build_batch_sampler import build_batch_sampler

    config = config_args("train_sep_sepformer_paper.yaml")
    assert config["iterator_type"] == "sequence" and config["batch_type"] == "folded"
    seconds = {"a": 2.0, "b": 3.5, "c": 4.9, "d": 6.0, "e": 7.5, "f": 12.0, "g": 3.0}
    shape_files = []
    for name in ("speech_mix", "speech_ref1", "speech_ref2"):
        shape_files.append(tmp_path / f"{name}_shape")
        shape_files[-1].write_text("".join(f"{key} {round(s * 16000)}\n" for key, s in seconds.items()))
    sampler = build_batch_sampler(config["batch_type"], config["batch_size"], batch_bins=0,
                                  shape_files=[str(f) for f in shape_files], fold_lengths=config["fold_length"])
    batches = list(sampler)
    assert sorted(key for batch in batches for key in batch) == sorted(seconds)
    for batch in batches:  # 4 utterances below 5 s, 2 up to 10 s, 1 above
        assert len(batch) <= config["batch_size"] // (1 + max(round(seconds[k] * 16000) for k in batch) // 80000)
    crops = vars(EnhancementTask.get_parser().parse_args(["--iterator_type", "chunk", "--chunk_length", "64000"]))
    assert crops["iterator_type"] == "chunk" and str(crops["chunk_length"]) == "64000"


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
