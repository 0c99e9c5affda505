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
    """Names each segment by its unit count and parses the odd counts only (falls back on the
    rest), so transcripts and statuses tell segments apart whatever order they come in."""

    def __init__(self):
        self.segments = 0
        self.batches = []

    def correct(self, units):
        self.segments += len(units)
        self.batches.append(len(units))
        return [Correction(f"pre{len(u)}", f"cor{len(u)}", PARSED if len(u) % 2 else FALLBACK_PRELIMINARY)
                for u in units]


class StubCodec:
    sample_rate = FS

    def encode_batch(self, waves):
        return [torch.zeros(2, max(1, len(wave) // 320), dtype=torch.long) for wave in waves]


class StubResynthesizer:
    codec = StubCodec()

    def __init__(self, needs_semantic=False):
        self.needs_semantic = needs_semantic

    def synthesize_batch(self, est_tokens, phonemes, semantic, num_samples):
        return [np.full(samples, 0.25, np.float32) for samples in num_samples]


class StubAligner:
    fs = FS

    def align(self, est, syn):
        return (est + syn).astype(np.float32)


def stub_g2p(texts):
    return [text.upper() for text in texts]


def stub_system(mode, corrector=None, batch_size=PipelineOptions.batch_size):
    return SepALM(StubSeparator(), StubExtractor(), stub_quantizer, corrector or StubCorrector(), stub_g2p,
                  StubResynthesizer(), StubAligner(), mode=mode,
                  options=PipelineOptions(max_segment_sec=1.0, batch_size=batch_size))


@pytest.mark.parametrize("mode", ["sepalm", "no_aligner"])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_every_speaker_keeps_the_corrector_status_of_each_of_its_segments(mode, batch_size):
    wave = speech_with_pauses(3, burst_sec=0.8, pause_sec=0.3)
    corrector = StubCorrector()
    speakers = stub_system(mode, corrector, batch_size).separate(wave, FS)
    assert len(speakers) == 2
    segments = {0: pause_segments(wave, FS, max_sec=1.0), 1: pause_segments(0.5 * wave, FS, max_sec=1.0)}
    total = len(segments[0]) + len(segments[1])
    assert len(segments[0]) >= 3 and corrector.segments == total
    # both speakers' segments share batches: ceil(total / batch_size) corrector calls
    assert corrector.batches == [min(batch_size, total - start) for start in range(0, total, batch_size)]
    for speaker, estimate, cuts in zip(speakers, (wave, 0.5 * wave), segments.values()):
        counts = [(end - start) // 320 for start, end in cuts]  # StubExtractor's frames, all distinct units
        assert speaker.status == [PARSED if n % 2 else FALLBACK_PRELIMINARY for n in counts]
        assert speaker.preliminary == " ".join(f"pre{n}" for n in counts)
        assert speaker.corrected == " ".join(f"cor{n}" for n in counts)
        expected = estimate + 0.25 if mode == "sepalm" else np.full(len(wave), 0.25)
        np.testing.assert_allclose(speaker.waveform, expected, atol=1e-6)


def test_separate_batch_gives_each_input_what_separate_gives_it():
    inputs = [speech_with_pauses(n, burst_sec=0.7, pause_sec=0.3, seed=n) for n in (1, 2, 3)]
    system = stub_system("sepalm", batch_size=4)
    batched = system.separate_batch(inputs, FS)
    for wave, speakers in zip(inputs, batched):
        alone = system.separate(wave, FS)
        for got, expected in zip(speakers, alone):
            np.testing.assert_array_equal(got.waveform, expected.waveform)
            assert (got.preliminary, got.corrected, got.status) == (expected.preliminary, expected.corrected, expected.status)


def test_a_bad_input_of_a_batch_is_refused_before_anything_runs():
    corrector = StubCorrector()
    bad = np.full(FS, np.nan, np.float32)
    with pytest.raises(pipeline.AudioError, match="NaN or infinite"):
        stub_system("sepalm", corrector).separate_batch([speech_with_pauses(1), bad], FS)
    assert corrector.segments == 0


@pytest.mark.parametrize("options", [dict(batch_size=0), dict(max_segment_sec=0.0)])
def test_pipeline_options_are_checked(options):
    with pytest.raises(ValueError, match="must be"):
        PipelineOptions(**options)


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


# ---------------------------------------------------------------------------------------------
# Batching over real tiny components: one corrector / G2P / text-to-semantic / synthesizer call
# per batch gives, under greedy decoding, what one segment at a time gives

N_UNITS = 10
TEXTS = {  # units, preliminary, corrected: the tiny corrector learns the answer format from these
    "a": ([3, 1, 4, 1, 5], "THE CAT SAT ON THE MAP", "THE CAT SAT ON THE MAT"),
    "b": ([2, 7, 1, 8, 2, 8, 6], "A DOG RAN", "A DOG RAN IN THE PARK"),
}
TINY_LAYERS = dict(d_model=16, nhead=2, num_layers=1, dim_feedforward=32, dropout=0.0)


class TwoVoicesSeparator:
    """Stands in for a trained separator: the pipeline's batching starts after it."""
    fs = FS

    def separate(self, samples, fs):
        return [samples.astype(np.float32), np.ascontiguousarray(samples[::-1]).astype(np.float32)]


def tiny_trained_corrector():
    """A 1-layer LLaMA that learned the chain-of-thought format on two examples, so unseen units
    give transcripts (parsed or not) instead of nothing."""
    from sepalm_espnet.corrector.model import AudioLMCorrector
    from sepalm_espnet.corrector.prompt import encode_prompt
    from sepalm_espnet.corrector.tokenizer import add_unit_tokens, train_sentencepiece_tokenizer
    from sepalm_espnet.tasks.corrector import CorrectorCollateFn

    tokenizer = train_sentencepiece_tokenizer([text for _, *texts in TEXTS.values() for text in texts])
    add_unit_tokens(tokenizer, N_UNITS)
    torch.manual_seed(0)
    model = AudioLMCorrector(len(tokenizer), lm_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                            num_key_value_heads=2, intermediate_size=64), use_lora=False)
    examples = []
    for key, (units, preliminary, corrected) in TEXTS.items():
        encoded = encode_prompt(tokenizer, units, preliminary, corrected)
        examples.append((key, {"input_ids": np.array(encoded.input_ids), "labels": np.array(encoded.labels)}))
    _, batch = CorrectorCollateFn(tokenizer.eos_token_id)(examples)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss, _, _ = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def tiny_components():
    from sepalm_espnet.aligner.inference import AlignerInference
    from sepalm_espnet.aligner.model import AlignerBuilder
    from sepalm_espnet.corrector.generate import CorrectorGenerator
    from sepalm_espnet.corrector.units import KMeansQuantizer, build_feature_extractor
    from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
    from sepalm_espnet.synthesizer.codec import DacCodec, build_dac
    from sepalm_espnet.synthesizer.g2p import G2p, TokenList
    from sepalm_espnet.synthesizer.masked import MaskedSynthesizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    corrector, tokenizer = tiny_trained_corrector()
    extractor = build_feature_extractor("logmel", {}, "cpu")
    mixture = speech_with_pauses(4, burst_sec=0.6, pause_sec=0.25, seed=5)
    features = extractor.extract(mixture)
    quantizer = KMeansQuantizer(features[np.random.default_rng(0).choice(len(features), N_UNITS, replace=False)])
    g2p = G2p("en-us")
    token_list = TokenList.build(g2p([text for _, *texts in TEXTS.values() for text in texts]))
    torch.manual_seed(1)
    codec = DacCodec(build_dac(encoder_dim=4, encoder_rates=[2, 4, 5], latent_dim=16, decoder_dim=16,
                               n_codebooks=2, codebook_size=16, codebook_dim=4))
    ar_nar = ArNarSynthesizer(len(token_list), num_codebooks=2, codebook_size=16, **TINY_LAYERS)
    with torch.no_grad():  # an end token that competes with the codes: AR outputs of different lengths
        ar_nar.ar.head.bias[ar_nar.ar.end_id] += 1.0
    masked = MaskedSynthesizer(num_codebooks=2, codebook_size=16, condition="semantic", semantic_vocab_size=12,
                               inference_steps=[3, 1], **TINY_LAYERS)
    text_to_semantic = TextToSemantic(len(token_list), unit_vocab_size=12, d_model=16, nhead=2, num_encoder_layers=1,
                                      num_decoder_layers=1, dim_feedforward=32, dropout=0.0, max_length_ratio=1.0).eval()
    aligner_conf = yaml.safe_load(open("egs2/TEMPLATE/sepalm1/conf/tuning/train_ali_cnn_mini.yaml"))
    import argparse
    aligner_model = AlignerBuilder.build_model(argparse.Namespace(**aligner_conf))
    with torch.no_grad():  # untrained it passes ŝ through (zero output layer): here s* must reach the output
        aligner_model.aligner.output_projection.weight.normal_(0.0, 0.1)
    aligner = AlignerInference(aligner_model, FS)
    greedy = SynthesisOptions(temperature=0.0)
    yield dict(
        mixture=mixture,
        corrector=CorrectorGenerator(corrector, tokenizer, do_sample=False, max_length=96),
        extractor=extractor, quantizer=quantizer, g2p=g2p, aligner=aligner,
        ar_nar=Resynthesizer(ar_nar, codec, token_list, greedy),
        masked=(Resynthesizer(masked, codec, token_list, greedy), (text_to_semantic, token_list)),
    )
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["sepalm", "no_aligner"])
@pytest.mark.parametrize("synthesizer", ["ar_nar", "masked"])
def test_batched_segments_give_what_one_at_a_time_gives_over_real_components(tiny_components, synthesizer, mode):
    parts = tiny_components
    resynthesizer, text_to_semantic = (parts["ar_nar"], None) if synthesizer == "ar_nar" else parts["masked"]

    def system(batch_size):
        return SepALM(TwoVoicesSeparator(), parts["extractor"], parts["quantizer"], parts["corrector"], parts["g2p"],
                      resynthesizer, parts["aligner"], text_to_semantic=text_to_semantic, mode=mode,
                      options=PipelineOptions(max_segment_sec=0.9, batch_size=batch_size))

    second = speech_with_pauses(2, burst_sec=0.5, pause_sec=0.25, seed=6)
    inputs = [parts["mixture"], second]
    one_at_a_time = [system(1).separate(wave, FS) for wave in inputs]
    batched_model = system(8)
    batched = batched_model.separate_batch(inputs, FS)
    segments = sum(len(speaker.status) for speakers in batched for speaker in speakers)
    assert segments >= 8, "the test needs several segments per speaker"
    transcripts = [speaker.corrected for speakers in one_at_a_time for speaker in speakers]
    assert any(transcripts), "the corrector wrote nothing: the synthesizer would see empty phonemes only"
    for alone, together in zip(one_at_a_time, batched):
        for expected, got in zip(alone, together):
            assert (got.preliminary, got.corrected, got.status) == (expected.preliminary, expected.corrected, expected.status)
            np.testing.assert_allclose(got.waveform, expected.waveform, rtol=1e-4, atol=1e-6)
    # every segment was timed once per component, in ceil(segments / 8) batched calls
    assert batched_model.rtf.components["synthesizer"].calls == -(-segments // 8)
