"""EncodecCodec on a tiny random EnCodec saved with save_pretrained, and load_codec's dispatch."""
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import EncodecConfig, EncodecModel

from sepalm_espnet.data.kaldi_dir import read_kv, write_kv
from sepalm_espnet.synthesizer.codec import CodecError, DacCodec, build_dac, load_codec, save_dac
from sepalm_espnet.synthesizer.encodec import EncodecCodec
from sepalm_espnet.synthesizer.resynthesize import codec_resynthesis_scp
from sepalm_espnet.synthesizer.token_io import TokenReader, tokenize_wav_scp

FS = 24000
HOP = 80  # 5 * 4 * 4: 300 frames/s; 32 entries = 5 bits, so 1.5 kbps a codebook
TINY_ENCODEC = dict(
    sampling_rate=FS, target_bandwidths=[3.0, 6.0], upsampling_ratios=[5, 4, 4], codebook_size=32,
    hidden_size=16, num_filters=4, num_lstm_layers=1,
)


@pytest.fixture(scope="module")
def tiny_encodec():
    torch.manual_seed(0)
    return EncodecModel(EncodecConfig(**TINY_ENCODEC)).eval()


@pytest.fixture(scope="module")
def encodec_dir(tiny_encodec, tmp_path_factory):
    path = tmp_path_factory.mktemp("encodec") / "tiny"
    tiny_encodec.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def codec(encodec_dir):
    return EncodecCodec.from_pretrained(encodec_dir)


def noise(*shape, seed=0):
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_properties(codec):
    assert (codec.sample_rate, codec.hop_length, codec.n_codebooks, codec.codebook_size) == (FS, HOP, 4, 32)
    assert codec.frame_rate == 300.0 and codec.bandwidth == 6.0 and codec.bandwidths == {2: 3.0, 4: 6.0}


@pytest.mark.parametrize("num_samples", [80, 2400, 2401, 1, 100])  # one hop, 0.1 s, a sample more, very short
def test_round_trip_restores_length_exactly(codec, num_samples):
    tokens = codec.encode(noise(2, num_samples))
    assert tokens.shape == (2, 4, math.ceil(num_samples / HOP)) and tokens.dtype == torch.int64
    assert tokens.shape[-1] == codec.num_frames(num_samples)
    assert 0 <= tokens.min() and tokens.max() < 32
    audio = codec.decode(tokens, num_samples)
    assert audio.shape == (2, num_samples) and audio.abs().max() <= 1.0
    assert codec.decode(tokens).shape == (2, tokens.shape[-1] * HOP)


def test_save_then_load_gives_identical_tokens_and_audio(tiny_encodec, codec):
    wav = noise(1, 5000, seed=1)
    in_memory = EncodecCodec(tiny_encodec)
    tokens = codec.encode(wav)
    assert torch.equal(in_memory.encode(wav), tokens)
    torch.testing.assert_close(in_memory.decode(tokens, 5000), codec.decode(tokens, 5000), rtol=0, atol=0)


def test_n_codebooks_picks_the_bandwidth(encodec_dir, codec):
    wav = noise(1, 4000, seed=2)
    two = EncodecCodec.from_pretrained(encodec_dir, n_codebooks=2)
    tokens = two.encode(wav)
    # The residual quantizer is greedy: 3 kbps codes are the first codebooks of the 6 kbps ones.
    assert (two.n_codebooks, two.bandwidth) == (2, 3.0) and torch.equal(tokens, codec.encode(wav)[:, :2])
    assert codec.decode(tokens, 4000).shape == (1, 4000)
    with pytest.raises(CodecError, match=r"n_codebooks 3 matches no bandwidth .*2 \(3.0 kbps\), 4 \(6.0 kbps\)"):
        EncodecCodec.from_pretrained(encodec_dir, n_codebooks=3)


def test_a_batch_of_equal_lengths_encodes_as_one_at_a_time(codec):
    waves = [noise(3000, seed=seed).numpy() for seed in (3, 4, 5)]
    batch = codec.encode_batch(waves)
    for wave, tokens in zip(waves, batch):
        assert torch.equal(tokens, codec.encode(torch.from_numpy(wave)[None])[0])
    ragged = codec.encode_batch([noise(n, seed=n).numpy() for n in (2400, 1000, 81)])
    assert [tuple(t.shape) for t in ragged] == [(4, 30), (4, 13), (4, 2)]


def test_bad_inputs_are_refused(codec):
    tokens = codec.encode(noise(1, 160))
    with pytest.raises(CodecError, match="cannot hold"):
        codec.decode(tokens, 300)  # 2 frames hold 81..160 samples
    with pytest.raises(CodecError, match="token values"):
        codec.decode(tokens + 32)
    with pytest.raises(CodecError, match="5 codebooks given, the model has 4"):
        codec.decode(torch.cat([tokens, tokens[:, :1]], dim=1))
    with pytest.raises(CodecError, match="0 samples"):
        codec.encode(torch.zeros(1, 0))
    with pytest.raises(CodecError, match="float"):
        codec.encode(torch.zeros(2, 1, 160))


@pytest.mark.parametrize("option, value", [("normalize", True), ("chunk_length_s", 1.0), ("audio_channels", 2)])
def test_encodecs_whose_tokens_alone_do_not_code_the_waveform_are_refused(option, value):
    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig(**{**TINY_ENCODEC, option: value}))
    with pytest.raises(CodecError, match=f"{option}={value} is unsupported"):
        EncodecCodec(model)


def test_foreign_or_incomplete_checkpoints_are_refused(tiny_encodec, tmp_path):
    with pytest.raises(CodecError, match="absent: no such model directory"):
        EncodecCodec.from_pretrained(tmp_path / "absent")
    partial = tmp_path / "partial"
    state = {key: value for key, value in tiny_encodec.state_dict().items() if not key.startswith("decoder.")}
    tiny_encodec.save_pretrained(partial, state_dict=state)
    with pytest.raises(CodecError, match="weights missing or of the wrong shape"):
        EncodecCodec.from_pretrained(partial)
    config = json.loads((partial / "config.json").read_text())
    (partial / "config.json").write_text(json.dumps({**config, "model_type": "wavlm"}))
    with pytest.raises(CodecError, match="a 'wavlm' model, expected 'encodec'"):
        EncodecCodec.from_pretrained(partial)


@pytest.fixture(scope="module")
def dac_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dac") / "dac.pth"
    save_dac(build_dac(encoder_dim=4, encoder_rates=[2, 4, 5], latent_dim=16, decoder_dim=16,
                       n_codebooks=3, codebook_size=64), path)
    return path


def test_load_codec_picks_encodec_or_dac(encodec_dir, dac_file, tmp_path, monkeypatch):
    encodec = load_codec(encodec_dir, n_codebooks=2)
    assert isinstance(encodec, EncodecCodec) and encodec.n_codebooks == 2
    dac = load_codec(str(dac_file), n_codebooks=2)
    assert isinstance(dac, DacCodec) and (dac.n_codebooks, dac.codebook_size) == (2, 64)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "wavlm"}))
    with pytest.raises(CodecError, match="other: a directory, but not a transformers EnCodec"):
        load_codec(tmp_path / "other")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    # A facebook/encodec id goes to EnCodec's loader (here: offline, nothing cached), not to DAC's.
    with pytest.raises(CodecError, match="facebook/encodec_24khz: no such directory, .* in the local hub cache"):
        load_codec("facebook/encodec_24khz", n_codebooks=8)


def test_tokenize_then_decode_scps_through_the_codec_callers(encodec_dir, tmp_path):
    """What codec_tokenize and codec_resynthesis run, given an EncodecCodec: 16 kHz files are
    resampled to 24 kHz on reading, each keeps ceil(len / hop) frames, and decoding gives back
    each file's length at the codec's rate."""
    codec = load_codec(encodec_dir, n_codebooks=2)
    seconds = {"a": 0.5, "b": 0.125, "c": 0.3}
    wav_scp = {}
    for key, duration in seconds.items():
        path = tmp_path / f"{key}.wav"
        sf.write(path, noise(int(16000 * duration), seed=8).numpy(), 16000)
        wav_scp[key] = str(path)
    write_kv(tmp_path / "wav.scp", wav_scp)
    tokenize_wav_scp(codec, tmp_path / "wav.scp", tmp_path / "tokens.ark", tmp_path / "tokens.scp", batch_size=2)
    tokens = TokenReader(tmp_path / "tokens.scp")
    assert {key: tokens[key].shape for key in tokens} == {
        key: (2, math.ceil(FS * duration / HOP)) for key, duration in seconds.items()
    }
    codec_resynthesis_scp(codec, tmp_path / "tokens.scp", tmp_path / "wav.scp", tmp_path / "decoded")
    decoded = read_kv(tmp_path / "decoded" / "speech.scp")
    for key, duration in seconds.items():
        audio, fs = sf.read(decoded[key])
        assert fs == FS and len(audio) == round(FS * duration) and np.all(np.isfinite(audio))
