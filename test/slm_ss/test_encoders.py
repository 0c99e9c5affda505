"""SLM-SS mixture encoders: frame counts, gradients, and features of real frames that do not
depend on the padding after them (batched decoding == one by one)."""
import math

import pytest
import torch

from sepalm_espnet.slm_ss.encoders import MIXTURE_ENCODERS, ConvMixtureEncoder, MixtureEncoder, build_mixture_encoder

HOP = 320
LENGTHS = [4800, 3000, 321]  # 15, 10 and 2 frames: one length on the frame grid, two not


def tiny_encoder(feature: str, **overrides) -> ConvMixtureEncoder:
    torch.manual_seed(0)
    return ConvMixtureEncoder(**{**dict(output_dim=24, feature=feature, n_mels=20, num_layers=2), **overrides})


def waveforms(lengths, width, seed=0, padding_value=0.0):
    generator = torch.Generator().manual_seed(seed)
    speech = torch.full((len(lengths), width), padding_value)
    for row, length in enumerate(lengths):
        speech[row, :length] = 0.1 * torch.randn(length, generator=generator)
    return speech, torch.tensor(lengths)


@pytest.mark.parametrize("feature", ["logmel", "waveform"])
def test_shapes_and_frame_lengths(feature):
    encoder = tiny_encoder(feature)
    features, frame_lengths = encoder(*waveforms(LENGTHS, 4800))
    assert frame_lengths.tolist() == [math.ceil(n / HOP) for n in LENGTHS] == [15, 10, 2]
    assert features.shape == (3, 15, 24) and encoder.output_dim == 24 and encoder.sample_rate == 16000
    padded = ~(torch.arange(15)[None] < frame_lengths[:, None])
    assert (features[padded] == 0).all()  # padded frames are zero, real ones are not
    assert features[~padded].abs().sum(dim=-1).min() > 0


@pytest.mark.parametrize("feature", ["logmel", "waveform"])
def test_forward_backward_reaches_every_parameter(feature):
    encoder = tiny_encoder(feature)
    speech, lengths = waveforms(LENGTHS, 4800)
    speech.requires_grad_(True)
    features, _ = encoder(speech, lengths)
    features.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in encoder.parameters())
    assert speech.grad[0].abs().sum() > 0


@pytest.mark.parametrize("feature", ["logmel", "waveform"])
def test_real_frames_do_not_depend_on_the_padding(feature):
    """Zeroed samples and masked frames make it exact: each mixture alone (no padding) gives the
    batch's features, whatever value and amount of padding the batch has."""
    encoder = tiny_encoder(feature).eval()
    batched, frame_lengths = encoder(*waveforms(LENGTHS, 6000, padding_value=0.7))
    assert batched.shape[1] == math.ceil(6000 / HOP)
    tight, _ = waveforms(LENGTHS, 4800)  # the same samples (same seed), no padding value
    for row, length in enumerate(LENGTHS):
        alone, alone_lengths = encoder(tight[row : row + 1, :length], torch.tensor([length]))
        frames = int(frame_lengths[row])
        assert alone.shape[1] == frames == int(alone_lengths[0])
        assert torch.allclose(alone[0], batched[row, :frames], atol=1e-5), f"row {row}"


def test_waveform_beyond_a_length_is_ignored():
    """Without masking, the last real frames would read the next mixture's padding samples."""
    encoder = tiny_encoder("logmel").eval()
    speech, lengths = waveforms([3000], 4000)
    noisy = speech.clone()
    noisy[0, 3000:] = 1.0
    assert torch.equal(encoder(speech, lengths)[0], encoder(noisy, lengths)[0])


def test_registry_builds_by_name_and_names_unknown_ones():
    encoder = build_mixture_encoder("conv", {"output_dim": 16, "n_mels": 20, "num_layers": 1})
    assert isinstance(encoder, MixtureEncoder) and encoder.output_dim == 16
    assert MIXTURE_ENCODERS["conv"] is ConvMixtureEncoder
    with pytest.raises(ValueError, match=r"unknown mixture encoder 'hubert'; choose from \['conv'"):
        build_mixture_encoder("hubert", {})
    with pytest.raises(TypeError, match="mixture encoder 'conv'"):
        build_mixture_encoder("conv", {"n_filters": 3})


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown feature 'mfcc'"):
        ConvMixtureEncoder(feature="mfcc")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ConvMixtureEncoder(kernel_size=4)
    with pytest.raises(ValueError, match=r"\(B, N\) single-channel"):
        tiny_encoder("logmel")(torch.zeros(1, 2, 800), torch.tensor([800]))
