"""SeparatorModel (and SepALM in separator_only mode): archive round trip is exact; audio in any
common form; unsafe weights refused."""
import logging
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from sepalm_espnet import zoo
from sepalm_espnet.inference import SepALM, SeparatedSpeaker, SeparatorModel
from sepalm_espnet.separator.long_audio import LongAudioSeparator, SegmentOptions
from sepalm_espnet.separator.registry import enh_model_separate_fn, min_input_samples

FS = 16000
CHECKPOINT = "valid.si_snr_loss.ave.pth"


class Payload:
    """Any class instance: unpickling it means running code chosen by the file's author."""


@pytest.fixture(scope="module")
def experiment(separator_experiment):
    return separator_experiment


@pytest.fixture(scope="module")
def archive(separator_archive):
    return separator_archive


@pytest.fixture(scope="module")
def packed_model(archive, tmp_path_factory):
    return SeparatorModel.from_pretrained(archive, cache_dir=tmp_path_factory.mktemp("cache"))


def noise(samples, seed=0, channels=1):
    shape = (samples,) if channels == 1 else (samples, channels)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.1


def reference_separation(model, mixture):
    estimates = enh_model_separate_fn(model)(torch.from_numpy(mixture).unsqueeze(0))
    return [estimate.squeeze(0).numpy() for estimate in estimates]


def test_archive_round_trip_is_exact(experiment, packed_model):
    _, original = experiment
    mixture = noise(FS // 2)
    estimates = packed_model.separate(mixture, sample_rate=FS)
    assert len(estimates) == 2 and all(e.dtype == np.float32 for e in estimates)
    for estimate, expected in zip(estimates, reference_separation(original, mixture)):
        assert np.array_equal(estimate, expected)
    loaded = packed_model.model.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in original.state_dict().items())


def test_packed_config_has_no_experiment_paths(archive, packed_model, experiment):
    exp, _ = experiment
    with zipfile.ZipFile(archive) as zf:
        assert str(exp) not in zf.read("separator/config.yaml").decode()
    assert packed_model.fs == FS


def test_experiment_dir_loads_the_same_model(experiment, packed_model):
    exp, _ = experiment
    from_exp = SeparatorModel.from_pretrained(exp, checkpoint=CHECKPOINT)
    mixture = noise(FS // 4, seed=1)
    for a, b in zip(from_exp.separate(mixture, FS), packed_model.separate(mixture, FS)):
        assert np.array_equal(a, b)
    with pytest.raises(FileNotFoundError, match=CHECKPOINT):
        SeparatorModel.from_pretrained(exp, checkpoint="valid.loss.best.pth")


def test_path_array_and_tensor_give_the_same_result(packed_model, tmp_path):
    mixture = noise(FS // 4, seed=2)
    sf.write(tmp_path / "mix.wav", mixture, FS, subtype="FLOAT")
    from_array = packed_model.separate(mixture, sample_rate=FS)
    for other in (packed_model.separate(tmp_path / "mix.wav"), packed_model.separate(str(tmp_path / "mix.wav")),
                  packed_model.separate(torch.from_numpy(mixture), sample_rate=FS)):
        assert all(np.array_equal(a, b) for a, b in zip(from_array, other))
    with pytest.raises(ValueError, match="sample_rate is required"):
        packed_model.separate(mixture)


def test_stereo_is_downmixed_either_layout(packed_model, caplog):
    stereo = noise(FS // 4, seed=3, channels=2)
    mono = packed_model.separate(stereo.mean(axis=1), sample_rate=FS)
    with caplog.at_level(logging.INFO):
        channels_last = packed_model.separate(stereo, sample_rate=FS)
    assert "downmixing 2 channels" in caplog.text
    channels_first = packed_model.separate(torch.from_numpy(stereo.T.copy()), sample_rate=FS)
    for a, b, c in zip(mono, channels_last, channels_first):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_other_rate_is_resampled_and_returned_at_the_input_rate(packed_model, tmp_path, caplog):
    mixture_8k = noise(8000 // 2 + 3, seed=4)
    sf.write(tmp_path / "mix8k.wav", mixture_8k, 8000, subtype="FLOAT")
    with caplog.at_level(logging.INFO):
        estimates = packed_model.separate(tmp_path / "mix8k.wav")
    assert "resampling 8000 Hz -> 16000 Hz" in caplog.text
    assert [e.shape for e in estimates] == [mixture_8k.shape] * 2
    assert all(e.dtype == np.float32 and np.all(np.isfinite(e)) for e in estimates)


def test_long_input_is_separated_segment_wise(experiment, archive, tmp_path):
    _, original = experiment
    segment = SegmentOptions(segment_sec=0.25, hop_sec=0.125)
    model = SeparatorModel.from_pretrained(archive, cache_dir=tmp_path, segment=segment)
    expected = LongAudioSeparator(
        enh_model_separate_fn(original), 2, FS, segment, min_samples=min_input_samples(original)
    ).separate_array(noise(FS, seed=5), FS)
    assert all(np.array_equal(a, b) for a, b in zip(model.separate(noise(FS, seed=5), FS), expected))


def test_pickled_object_in_checkpoint_is_refused(experiment, tmp_path):
    exp, original = experiment
    (tmp_path / "config.yaml").write_text((exp / "config.yaml").read_text())
    torch.save({**original.state_dict(), "payload": Payload()}, tmp_path / CHECKPOINT)
    with pytest.raises(zoo.UnsafeWeightsError, match=CHECKPOINT):
        SeparatorModel.from_pretrained(tmp_path)


def test_separator_only_archive_runs_as_sepalm_in_separator_only_mode(archive, packed_model, tmp_path):
    model = SepALM.from_pretrained(archive, mode="separator_only", cache_dir=tmp_path)
    mixture = noise(FS // 4, seed=6)
    speakers = model.separate(mixture, FS)
    assert all(isinstance(speaker, SeparatedSpeaker) and speaker.status == [] for speaker in speakers)
    for speaker, estimate in zip(speakers, packed_model.separate(mixture, FS)):
        assert np.array_equal(speaker.waveform, estimate)
    with pytest.raises(zoo.ArchiveError, match="mode 'sepalm' needs components"):
        SepALM.from_pretrained(archive, cache_dir=tmp_path)
