"""Segment-wise separation: equals full inference, undoes speaker swaps, handles bad input."""
import logging

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from espnet2.enh.decoder.conv_decoder import ConvDecoder
from espnet2.enh.encoder.conv_encoder import ConvEncoder
from espnet2.enh.espnet_model import ESPnetEnhancementModel

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv
from sepalm_espnet.separator.long_audio import (
    LongAudioSeparator,
    SampleRateError,
    SegmentOptions,
    best_permutation,
    separate_scp,
)
from sepalm_espnet.separator.registry import enh_model_separate_fn, min_input_samples
from sepalm_espnet.separator.sepformer import SepFormerSeparator

FS = 8000
MOVING_AVERAGE = torch.full((1, 1, 5), 0.2)


def low_high_split(mixture: torch.Tensor):
    """A fixed linear 'separator' whose two outputs are uncorrelated on white noise."""
    low = F.conv1d(mixture.unsqueeze(0), MOVING_AVERAGE, padding=2).squeeze(0)
    return [low, mixture - low]


class SwapOnOddCalls:
    """low_high_split, but every other call returns the speakers in the other order."""

    def __init__(self):
        self.calls = 0
        self.longest_input = 0

    def __call__(self, mixture):
        outputs = low_high_split(mixture)
        swap = self.calls % 2 == 1
        self.calls += 1
        self.longest_input = max(self.longest_input, mixture.shape[1])
        return outputs[::-1] if swap else outputs


def full_low_high(samples: np.ndarray) -> np.ndarray:
    return torch.cat(low_high_split(torch.from_numpy(samples).unsqueeze(0))).numpy()


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    separator = SepFormerSeparator(16, d_model=16, nhead=2, dim_feedforward=32, num_layers=1, num_blocks=1, chunk_size=10)
    model = ESPnetEnhancementModel(
        encoder=ConvEncoder(channel=16, kernel_size=16, stride=8),
        separator=separator,
        decoder=ConvDecoder(channel=16, kernel_size=16, stride=8),
        mask_module=None,
        loss_wrappers=None,
    )
    return model.eval()


def noise(seconds: float, seed: int = 0, channels: int = 1) -> np.ndarray:
    shape = (round(seconds * FS),) if channels == 1 else (round(seconds * FS), channels)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.1


@pytest.mark.parametrize("seconds", [0.3, 0.5])
def test_input_up_to_one_segment_equals_full_inference(tiny_model, seconds):
    separate = enh_model_separate_fn(tiny_model)
    long_audio = LongAudioSeparator(separate, 2, FS, SegmentOptions(0.5, 0.25), min_samples=16)
    mixture = noise(seconds)
    full = torch.cat(separate(torch.from_numpy(mixture).unsqueeze(0))).numpy()
    assert np.array_equal(long_audio.separate_array(mixture, FS), full)


def test_long_input_through_sepformer_keeps_length_and_is_finite(tiny_model):
    long_audio = LongAudioSeparator(
        enh_model_separate_fn(tiny_model), 2, FS, SegmentOptions(0.5, 0.25), min_samples=16
    )
    estimates = long_audio.separate_array(noise(1.7), FS)
    assert estimates.shape == (2, round(1.7 * FS)) and np.all(np.isfinite(estimates))


@pytest.mark.parametrize("seconds", [1.0, 1.3, 2.05])
def test_stitched_linear_separator_equals_full_and_swaps_are_undone(seconds):
    mixture = noise(seconds, seed=1)
    fake = SwapOnOddCalls()
    stitched = LongAudioSeparator(fake, 2, FS, SegmentOptions(0.4, 0.2)).separate_array(mixture, FS)
    assert fake.calls >= 4, "the test must cover several segments, hence several swaps"
    np.testing.assert_allclose(stitched, full_low_high(mixture), atol=1e-4)
    assert fake.longest_input == round(0.4 * FS)


def test_best_permutation_recovers_three_speaker_order():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((3, 400))
    shuffled = reference[[2, 0, 1]] * np.array([[0.5], [2.0], [1.0]]) + 0.01 * rng.standard_normal((3, 400))
    assert best_permutation(reference, shuffled) == (1, 2, 0)


def test_silent_input_gives_zeros_without_calling_the_separator():
    def must_not_run(mixture):
        raise AssertionError("separator called on silence")

    long_audio = LongAudioSeparator(must_not_run, 2, FS, SegmentOptions(0.4, 0.2))
    estimates = long_audio.separate_array(np.zeros(3000, np.float32), FS)
    assert estimates.shape == (2, 3000) and not np.any(estimates)


def test_silence_between_speech_keeps_speaker_order():
    mixture = noise(1.2, seed=2)
    mixture[3000:6500] = 0.0
    stitched = LongAudioSeparator(SwapOnOddCalls(), 2, FS, SegmentOptions(0.4, 0.2)).separate_array(mixture, FS)
    assert np.all(np.isfinite(stitched))
    np.testing.assert_allclose(stitched[:, :2500], full_low_high(mixture)[:, :2500], atol=1e-4)


def test_input_shorter_than_the_encoder_kernel_is_padded_then_trimmed(tiny_model):
    assert min_input_samples(tiny_model) == 16
    long_audio = LongAudioSeparator(enh_model_separate_fn(tiny_model), 2, FS, SegmentOptions(0.5, 0.25), min_samples=16)
    estimates = long_audio.separate_array(noise(0.001), FS)
    assert estimates.shape == (2, 8) and np.all(np.isfinite(estimates))


def test_stereo_is_downmixed_with_a_log_line(caplog):
    stereo = noise(0.6, channels=2)
    long_audio = LongAudioSeparator(low_high_split, 2, FS, SegmentOptions(0.4, 0.2))
    with caplog.at_level(logging.INFO):
        estimates = long_audio.separate_array(stereo, FS)
    assert "downmixing 2 channels" in caplog.text
    np.testing.assert_allclose(estimates, long_audio.separate_array(stereo.mean(axis=1), FS), atol=1e-6)


def test_wrong_sample_rate_is_refused_or_resampled_with_a_log_line(caplog):
    long_audio = LongAudioSeparator(low_high_split, 2, FS, SegmentOptions(0.4, 0.2))
    at_16k = noise(0.8)
    with pytest.raises(SampleRateError, match="16000 Hz but the separator expects 8000 Hz"):
        long_audio.separate_array(at_16k, 16000)
    with caplog.at_level(logging.INFO):
        estimates = long_audio.separate_array(at_16k, 16000, resample=True)
    assert "resampling 16000 Hz -> 8000 Hz" in caplog.text
    assert abs(estimates.shape[1] - len(at_16k) // 2) <= 1


def test_bad_arguments_and_samples_are_refused():
    with pytest.raises(ValueError, match="segments overlap"):
        SegmentOptions(0.4, 0.4)
    long_audio = LongAudioSeparator(low_high_split, 2, FS, SegmentOptions(0.4, 0.2))
    with pytest.raises(AudioError, match="NaN"):
        long_audio.separate_array(np.full(100, np.nan, np.float32), FS)
    with pytest.raises(AudioError, match="samples, channels"):
        long_audio.separate_array(np.zeros((2, 1000), np.float32), FS)


def test_separate_scp_writes_sorted_outputs_equal_to_in_memory_separation(tmp_path):
    mixtures = {"utt_b": noise(1.1, seed=3), "utt_a": noise(0.3, seed=4), "utt_c": noise(0.2, seed=5)}
    for key, samples in mixtures.items():
        sf.write(tmp_path / f"{key}.wav", samples, FS, subtype="FLOAT")
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text("".join(f"{key} {tmp_path / key}.wav\n" for key in mixtures))
    key_file = tmp_path / "keys.1.scp"
    key_file.write_text(f"utt_b {tmp_path}/utt_b.wav\nutt_a {tmp_path}/utt_a.wav\n")
    long_audio = LongAudioSeparator(low_high_split, 2, FS, SegmentOptions(0.4, 0.2))

    separate_scp(long_audio, wav_scp, tmp_path / "out", key_file=key_file)

    for n in (1, 2):
        scp = read_kv(tmp_path / "out" / f"spk{n}.scp")
        assert list(scp) == ["utt_a", "utt_b"]
        for key, path in scp.items():
            assert path.endswith(f"wavs/{key}_spk{n}.wav")
            written, fs = sf.read(path, dtype="float32")
            assert fs == FS
            np.testing.assert_allclose(written, full_low_high(mixtures[key])[n - 1], atol=1e-4)
    assert not list((tmp_path / "out" / "wavs").glob(".*"))


def test_separate_scp_names_bad_entries(tmp_path):
    sf.write(tmp_path / "fast.wav", noise(0.3), 16000)
    wav_scp = tmp_path / "wav.scp"
    long_audio = LongAudioSeparator(low_high_split, 2, FS, SegmentOptions(0.4, 0.2))
    wav_scp.write_text(f"fast {tmp_path}/fast.wav\n")
    with pytest.raises(SampleRateError, match="fast.wav"):
        separate_scp(long_audio, wav_scp, tmp_path / "out")
    wav_scp.write_text("piped sox in.wav -t wav - |\n")
    with pytest.raises(DataDirError, match="piped"):
        separate_scp(long_audio, wav_scp, tmp_path / "out")
