"""SepALM pipeline: segmenting long estimates at pauses, per-speaker results, what each mode
loads (zoo.COMPONENTS), and the options dataclasses every default lives in."""
import dataclasses
import inspect

import numpy as np
import pytest
import torch
import yaml

from sepalm_espnet import pipeline, zoo
from sepalm_espnet.corrector.generate import FALLBACK_PRELIMINARY, PARSED, Correction, DecodeOptions
from sepalm_espnet.pipeline import MODES, PipelineOptions, SepALM, pause_segments
from sepalm_espnet.separator.long_audio import LongAudioSeparator, SegmentOptions
from sepalm_espnet.synthesizer.layers import SynthesisOptions, filter_top_k_top_p
from sepalm_espnet.synthesizer.resynthesize import Resynthesizer
from sepalm_espnet.synthesizer.t2s import units_of_text_file
from sepalm_espnet.synthesizer.t2s_model import T2SDecodeOptions, TextToSemantic

FS = 16000


def speech_with_pauses(n_bursts, burst_sec=4.0, pause_sec=0.5, seed=0):
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(n_bursts):
        pieces += [0.3 * rng.standard_normal(int(burst_sec * FS)), np.zeros(int(pause_sec * FS))]
    return np.concatenate(pieces).astype(np.float32)


def test_short_input_is_one_segment():
    assert pause_segments(np.ones(FS), FS, max_sec=20) == [(0, FS)]


def test_three_minutes_are_cut_in_pauses_into_bounded_pieces():
    wave = speech_with_pauses(40)  # 180 s: 4 s bursts, 0.5 s pauses
    segments = pause_segments(wave, FS, max_sec=20)
    assert segments[0][0] == 0 and segments[-1][1] == len(wave)
    assert all(end == next_start for (_, end), (next_start, _) in zip(segments, segments[1:]))
    assert all(end - start <= 20 * FS for start, end in segments)
    period = int(4.5 * FS)
    for _, end in segments[:-1]:  # every cut falls inside a pause, not in speech
        assert end % period >= 4 * FS
    assert len(segments) <= 10  # pauses are used well: 180 s / 20 s


def test_speech_without_pauses_is_hard_cut():
    wave = 0.3 * np.random.default_rng(1).standard_normal(50 * FS).astype(np.float32)
    assert pause_segments(wave, FS, max_sec=20) == [(0, 20 * FS), (20 * FS, 40 * FS), (40 * FS, 50 * FS)]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode 'fast'"):
        SepALM(*[None] * 7, mode="fast")
    assert MODES == ("sepalm", "no_aligner", "separator_only")


# ---------------------------------------------------------------------------------------------
# The pipeline over stand-in components: per-speaker results, modes, and what each mode loads


class StubSeparator:
    fs = FS

    def separate(self, samples, fs):
        return [samples.astype(np.float32), (0.5 * samples).astype(np.float32)]


class StubExtractor:
    def extract(self, wave):
        return np.zeros((max(1, len(wave) // 320), 4), np.float32)


def stub_quantizer(features):
    return np.arange(len(features)) % 3


class StubCorrector:
    """Parses every other segment and falls back on the rest, so statuses tell segments apart."""

    def __init__(self):
        self.calls = 0

    def correct(self, units):
        self.calls += 1
        status = PARSED if self.calls % 2 else FALLBACK_PRELIMINARY
        return [Correction(f"pre{self.calls}", f"cor{self.calls}", status)]


class StubCodec:
    sample_rate = FS

    def encode_batch(self, waves):
        return [torch.zeros(2, max(1, len(wave) // 320), dtype=torch.long) for wave in waves]


class StubResynthesizer:
    codec = StubCodec()

    def __init__(self, needs_semantic=False):
        self.needs_semantic = needs_semantic

    def synthesize(self, est_tokens, phonemes, semantic, num_samples):
        return np.full(num_samples, 0.25, np.float32)


class StubAligner:
    fs = FS

    def align(self, est, syn):
        return (est + syn).astype(np.float32)


def stub_g2p(texts):
    return [text.upper() for text in texts]


def stub_system(mode, corrector=None):
    return SepALM(StubSeparator(), StubExtractor(), stub_quantizer, corrector or StubCorrector(), stub_g2p,
                  StubResynthesizer(), StubAligner(), mode=mode, options=PipelineOptions(max_segment_sec=1.0))


@pytest.mark.parametrize("mode", ["sepalm", "no_aligner"])
def test_every_speaker_keeps_the_corrector_status_of_each_of_its_segments(mode):
    wave = speech_with_pauses(2, burst_sec=0.8, pause_sec=0.3)
    segments = pause_segments(wave, FS, max_sec=1.0)
    assert len(segments) >= 2
    corrector = StubCorrector()
    speakers = stub_system(mode, corrector).separate(wave, FS)
    assert len(speakers) == 2 and corrector.calls == 2 * len(segments)
    calls = iter(range(1, corrector.calls + 1))
    for speaker, estimate in zip(speakers, (wave, 0.5 * wave)):
        numbers = [next(calls) for _ in segments]
        assert speaker.status == [PARSED if n % 2 else FALLBACK_PRELIMINARY for n in numbers]
        assert speaker.preliminary == " ".join(f"pre{n}" for n in numbers)
        assert speaker.corrected == " ".join(f"cor{n}" for n in numbers)
        expected = estimate + 0.25 if mode == "sepalm" else np.full(len(wave), 0.25)
        np.testing.assert_allclose(speaker.waveform, expected, atol=1e-6)


def test_separator_only_returns_the_estimates_without_transcripts():
    wave = speech_with_pauses(1)
    speakers = stub_system("separator_only").separate(wave, FS)
    assert [speaker.status for speaker in speakers] == [[], []]
    np.testing.assert_array_equal(speakers[1].waveform, 0.5 * wave)


def test_mode_switches_only_to_modes_whose_components_are_loaded():
    system = stub_system("sepalm")
    for mode in ("separator_only", "no_aligner", "sepalm"):
        system.mode = mode
    partial = SepALM(StubSeparator(), StubExtractor(), stub_quantizer, StubCorrector(), stub_g2p, StubResynthesizer(),
                     mode="no_aligner")
    with pytest.raises(ValueError, match=r"mode 'sepalm' runs \['aligner'\], which are not loaded"):
        partial.mode = "sepalm"
    with pytest.raises(ValueError, match="runs .*'kmeans', 'corrector'"):
        SepALM(StubSeparator(), mode="no_aligner")
    assert SepALM(StubSeparator(), mode="separator_only").loaded_components == {"separator"}


@pytest.fixture
def stub_archive(tmp_path):
    """An unpacked archive of every component (files are stand-ins: the loaders are patched)."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"sample_rate": FS}))
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pth")
    (tmp_path / "centers.npy").write_bytes(b"centers")
    (tmp_path / "kmeans.yaml").write_text("n_clusters: 3\n")
    files = {"config": tmp_path / "config.yaml", "model": tmp_path / "model.pth"}
    components = {
        "separator": files, "kmeans": {"centers": tmp_path / "centers.npy", "kmeans": tmp_path / "kmeans.yaml"},
        "corrector": files, "codec": {"codec": tmp_path / "model.pth"}, "synthesizer": files, "aligner": files,
    }

    def unpacked(name, without=(), extra=None):
        kept = {**{k: v for k, v in components.items() if k not in without}, **(extra or {})}
        return zoo.unpack(zoo.pack(tmp_path / f"{name}.zip", kept), tmp_path / name)

    return unpacked, files


@pytest.fixture
def loads(monkeypatch):
    """Patch every loader of SepALM.from_pretrained; the list records what was loaded."""
    loaded = []
    semantic = {"synthesizer": False}

    def recorder(name, result):
        def load(*args, **kwargs):
            loaded.append(name)
            return result(*args, **kwargs)
        return load

    monkeypatch.setattr(pipeline.SeparatorModel, "from_pretrained", recorder("separator", lambda *a, **k: StubSeparator()))
    monkeypatch.setattr(pipeline, "load_kmeans", recorder("kmeans", lambda *a: (stub_quantizer, "logmel", {})))
    monkeypatch.setattr(pipeline, "build_feature_extractor", lambda *a: StubExtractor())
    monkeypatch.setattr(pipeline.CorrectorGenerator, "from_files", recorder("corrector", lambda *a, **k: StubCorrector()))
    monkeypatch.setattr(pipeline.Resynthesizer, "from_files",
                        recorder("synthesizer", lambda *a, **k: StubResynthesizer(semantic["synthesizer"])))
    monkeypatch.setattr(pipeline, "G2p", lambda language: stub_g2p)
    monkeypatch.setattr(pipeline, "load_text_to_semantic", recorder("t2s", lambda *a: ("t2s model", "tokens")))
    monkeypatch.setattr(pipeline.AlignerInference, "from_pretrained", recorder("aligner", lambda *a, **k: StubAligner()))
    return loaded, semantic


@pytest.mark.parametrize("mode, expected", [
    ("separator_only", ["separator"]),
    ("no_aligner", ["separator", "kmeans", "corrector", "synthesizer"]),
    ("sepalm", ["separator", "kmeans", "corrector", "synthesizer", "aligner"]),
])
def test_a_mode_loads_only_the_components_it_runs(stub_archive, loads, mode, expected):
    unpacked, _ = stub_archive
    loaded, _ = loads
    system = SepALM.from_pretrained(unpacked("full"), mode=mode)
    assert loaded == expected and system.mode == mode
    assert system.loaded_components == set(expected) | ({"codec"} if "synthesizer" in expected else set())


def test_an_archive_without_a_mode_s_components_is_refused_by_name(stub_archive, loads):
    unpacked, _ = stub_archive
    loaded, _ = loads
    separator_only = unpacked("sep", without=("kmeans", "corrector", "codec", "synthesizer", "aligner"))
    assert SepALM.from_pretrained(separator_only, mode="separator_only").loaded_components == {"separator"}
    with pytest.raises(zoo.ArchiveError, match=r"mode 'no_aligner' needs .*'kmeans'.* runs modes \['separator_only'\]"):
        SepALM.from_pretrained(separator_only, mode="no_aligner")
    assert loaded == ["separator"]  # refused before loading anything


def test_the_t2s_component_is_loaded_for_a_semantic_synthesizer_only(stub_archive, loads):
    unpacked, files = stub_archive
    loaded, semantic = loads
    semantic["synthesizer"] = True
    with pytest.raises(zoo.ArchiveError, match="no 't2s' component, needed when the synthesizer is conditioned"):
        SepALM.from_pretrained(unpacked("no_t2s"), mode="no_aligner")
    loaded.clear()
    system = SepALM.from_pretrained(unpacked("with_t2s", extra={"t2s": files}), mode="no_aligner")
    assert loaded == ["separator", "kmeans", "corrector", "synthesizer", "t2s"] and "t2s" in system.loaded_components


@pytest.mark.parametrize("options_type", [PipelineOptions, SegmentOptions, SynthesisOptions, T2SDecodeOptions,
                                          DecodeOptions])
def test_every_option_has_one_default_and_a_help_line(options_type):
    fields = dataclasses.fields(options_type)
    assert all(f.default is not dataclasses.MISSING and f.metadata.get("help") for f in fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(options_type(), fields[0].name, fields[0].default)


def test_library_defaults_are_read_from_the_options():
    defaults = {
        (SepALM.from_pretrained, "options"): PipelineOptions(),
        (SepALM.from_pretrained, "corrector_options"): DecodeOptions(),
        (SepALM.from_pretrained, "synthesis_options"): SynthesisOptions(),
        (pipeline.SeparatorModel.from_pretrained, "segment"): SegmentOptions(),
        (LongAudioSeparator, "options"): SegmentOptions(),
        (Resynthesizer.from_files, "options"): SynthesisOptions(),
        (units_of_text_file, "options"): T2SDecodeOptions(),
        (TextToSemantic.generate, "max_length"): T2SDecodeOptions.max_length,
        (filter_top_k_top_p, "top_k"): SynthesisOptions.top_k,
    }
    for (function, name), default in defaults.items():
        assert inspect.signature(function).parameters[name].default == default, (function, name)


def test_an_array_shaped_like_a_batch_is_refused_not_downmixed():
    from sepalm_espnet.data.audio import AudioError

    with pytest.raises(AudioError, match=r"got shape \(3, 1600\), ambiguous .*expected one mixture: \(T,\)"):
        pipeline.as_samples(np.zeros((3, 1600), np.float32), FS)
    assert pipeline.as_samples(np.zeros((2, 1600), np.float32), FS)[0].shape == (1600, 2)  # torchaudio's stereo
    assert pipeline.as_samples(np.zeros((1600, 3), np.float32), FS)[0].shape == (1600, 3)  # soundfile's layout
    with pytest.raises(AudioError, match=r"got shape \(2, 3, 1600\)"):
        pipeline.as_samples(np.zeros((2, 3, 1600), np.float32), FS)
