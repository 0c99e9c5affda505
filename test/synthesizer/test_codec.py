import logging
import math

import pytest
import soundfile as sf
import torch

from sepalm_espnet.bin import codec_tokenize
from sepalm_espnet.utils.job_outputs import merge_job_outputs
from sepalm_espnet.data.kaldi_dir import read_kv, write_kv
from sepalm_espnet.synthesizer.codec import CodecError, DacCodec, build_dac, save_dac
from sepalm_espnet.synthesizer.token_io import TokenReader

FS = 16000
# The mini recipe's codec: hop 320 (50 frames/s) like the released 16 kHz model, 1.3M params.
MINI_ARCH = dict(encoder_dim=16, latent_dim=64, decoder_dim=64, n_codebooks=4, codebook_size=256)


@pytest.fixture(scope="module")
def tiny_dac():
    torch.manual_seed(0)
    return build_dac(**MINI_ARCH)


@pytest.fixture(scope="module")
def codec_file(tiny_dac, tmp_path_factory):
    path = tmp_path_factory.mktemp("codec") / "dac.pth"
    save_dac(tiny_dac, path)
    return path


@pytest.fixture(scope="module")
def codec(codec_file):
    return DacCodec.from_pretrained(codec_file)


def noise(*shape, seed=0):
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_properties(codec):
    assert (codec.sample_rate, codec.hop_length, codec.n_codebooks, codec.codebook_size) == (FS, 320, 4, 256)
    assert codec.frame_rate == 50.0


@pytest.mark.parametrize("num_samples", [3200, 16000, 21920, 1, 100])  # 0.2 s, 1 s, 1.37 s, very short
def test_round_trip_restores_length_exactly(codec, num_samples):
    tokens = codec.encode(noise(2, num_samples))
    assert tokens.shape == (2, 4, math.ceil(num_samples / 320)) and tokens.dtype == torch.int64
    assert 0 <= tokens.min() and tokens.max() < 256
    audio = codec.decode(tokens, num_samples)
    assert audio.shape == (2, num_samples) and audio.abs().max() <= 1.0
    assert codec.decode(tokens).shape == (2, tokens.shape[-1] * 320)


def test_save_then_load_gives_identical_tokens_and_audio(tiny_dac, codec):
    wav = noise(1, 5000, seed=1)
    in_memory = DacCodec(tiny_dac)
    assert torch.equal(in_memory.encode(wav), codec.encode(wav))
    tokens = codec.encode(wav)
    assert torch.equal(in_memory.decode(tokens, 5000), codec.decode(tokens, 5000))


def test_first_codebooks_only(codec_file, codec):
    wav = noise(1, 4000, seed=2)
    two = DacCodec.from_pretrained(codec_file, n_codebooks=2)
    tokens = two.encode(wav)
    assert two.n_codebooks == 2 and torch.equal(tokens, codec.encode(wav)[:, :2])
    assert codec.decode(tokens, 4000).shape == (1, 4000)
    with pytest.raises(CodecError, match="n_codebooks"):
        DacCodec.from_pretrained(codec_file, n_codebooks=5)


def test_bad_inputs_are_refused(codec):
    tokens = codec.encode(noise(1, 640))
    with pytest.raises(CodecError, match="cannot hold"):
        codec.decode(tokens, 1000)  # 2 frames hold 321..640 samples
    with pytest.raises(CodecError, match="token values"):
        codec.decode(tokens + 256)
    with pytest.raises(CodecError, match="5 codebooks given, the model has 4"):
        codec.decode(torch.cat([tokens, tokens[:, :1]], dim=1))
    with pytest.raises(CodecError, match="0 samples"):
        codec.encode(torch.zeros(1, 0))
    with pytest.raises(CodecError, match="float"):
        codec.encode(torch.zeros(2, 1, 320))


def test_ragged_batch_keeps_each_length(codec):
    waves = [noise(n, seed=n).numpy() for n in (16000, 12000, 3000)]
    batch = codec.encode_batch(waves)
    assert [tuple(t.shape) for t in batch] == [(4, 50), (4, 38), (4, 10)]
    for wave, tokens in zip(waves, batch):
        alone = codec.encode(torch.from_numpy(wave)[None])[0]
        # Zero padding only reaches the last frame of the shorter items.
        assert torch.equal(alone[:, :-1], tokens[:, :-1])


def test_unsafe_or_mismatched_checkpoints_are_refused(tiny_dac, codec_file, tmp_path):
    package = tmp_path / "package.pth"
    tiny_dac.save(str(package))  # DAC's default: a torch.package archive
    with pytest.raises(CodecError, match="torch.package"):
        DacCodec.from_pretrained(package)
    partial = tmp_path / "partial.pth"
    state = {k: v for k, v in tiny_dac.state_dict().items() if not k.startswith("decoder.")}
    kwargs = torch.load(codec_file, weights_only=True)["metadata"]["kwargs"]
    torch.save({"state_dict": state, "metadata": {"kwargs": kwargs}}, partial)
    with pytest.raises(CodecError, match="missing"):
        DacCodec.from_pretrained(partial)
    torch.save({"state_dict": tiny_dac.state_dict(), "metadata": {"kwargs": dict(kwargs, encoder_dim=8)}}, partial)
    with pytest.raises(CodecError, match="do not fit"):
        DacCodec.from_pretrained(partial)
    with pytest.raises(CodecError, match="neither"):
        DacCodec.from_pretrained(tmp_path / "absent.pth")


def test_decoder_must_undo_encoder():
    with pytest.raises(CodecError, match="decoder_rates"):
        build_dac(encoder_rates=[2, 4], decoder_rates=[4, 4])


def test_codec_tokenize_jobs_then_merge(codec_file, tmp_path, caplog):
    lengths = {"a": 16000, "b": 3000, "c": 7000}
    wav_scp = {}
    for key, num_samples in lengths.items():
        fs = 8000 if key == "c" else FS  # c is resampled to the codec rate
        path = tmp_path / f"{key}.wav"
        sf.write(path, noise(num_samples, seed=3).numpy(), fs)
        wav_scp[key] = str(path)
    write_kv(tmp_path / "wav.scp", wav_scp)
    step = tmp_path / "tokens"
    write_kv(step / "logdir" / "keys.1.scp", {"a": "", "c": ""}.items())
    write_kv(step / "logdir" / "keys.2.scp", {"b": ""}.items())
    with caplog.at_level(logging.INFO):
        for job in (1, 2):
            codec_tokenize.main(["--codec", str(codec_file), "--wav_scp", str(tmp_path / "wav.scp"),
                                 "--output_names", "tokens", "--key_file", str(step / f"logdir/keys.{job}.scp"),
                                 "--output_dir", str(step / f"logdir/output.{job}"), "--batch_size", "2",
                                 "--n_codebooks", "3"])
    assert "resampling 8000 Hz" in caplog.text
    merge_job_outputs(step, 2)  # the recipe's merger: the scps point into the jobs' arks
    tokens = TokenReader(step / "tokens.scp")
    assert list(read_kv(step / "tokens.scp")) == ["a", "b", "c"]
    assert {key: tokens[key].shape for key in tokens} == {"a": (3, 50), "b": (3, 10), "c": (3, 44)}
