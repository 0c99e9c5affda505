"""Stage 11 on tiny random models: exact output lengths, finite audio, scp/rtf outputs, JOB merge."""
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from sepalm_espnet.bin import syn_inference
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv
from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
from sepalm_espnet.synthesizer.codec import DacCodec, build_dac
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.masked import MaskedSynthesizer
from sepalm_espnet.synthesizer.resynthesize import ResynthesisError, Resynthesizer, merge_outputs, synthesize_scp
from sepalm_espnet.synthesizer.token_io import write_tokens

FS, HOP, Q, B = 16000, 40, 2, 16
PHONEMES = {"a": "h ə l oʊ", "b": "t ɛ s t"}
LAYERS = dict(d_model=16, nhead=2, num_layers=1, dim_feedforward=32, dropout=0.0)


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return DacCodec(build_dac(encoder_dim=4, encoder_rates=[2, 4, 5], latent_dim=16, decoder_dim=16,
                              n_codebooks=Q, codebook_size=B, codebook_dim=4))


@pytest.fixture(scope="module")
def token_list():
    return TokenList.build(PHONEMES.values())


def models(token_list):
    torch.manual_seed(1)
    return {
        "ar_nar": ArNarSynthesizer(len(token_list), num_codebooks=Q, codebook_size=B, **LAYERS),
        "masked": MaskedSynthesizer(num_codebooks=Q, codebook_size=B, condition="semantic", semantic_vocab_size=10,
                                    inference_steps=[3, 1], **LAYERS),
    }


@pytest.mark.parametrize("kind", ["ar_nar", "masked"])
@pytest.mark.parametrize("num_samples", [1001, 400, 41])
def test_output_has_exactly_the_requested_samples(codec, token_list, kind, num_samples):
    resynthesizer = Resynthesizer(models(token_list)[kind], codec, token_list, top_k=5, guidance_scale=1.5)
    est = np.random.default_rng(0).integers(0, B, (codec.num_frames(num_samples), Q))
    wave = resynthesizer.synthesize(est, "h ə l oʊ", [1, 2, 3], num_samples)
    assert wave.shape == (num_samples,) and wave.dtype == np.float32 and np.all(np.isfinite(wave))
    again = resynthesizer.synthesize(est, "h ə l oʊ", [1, 2, 3], num_samples)
    assert np.array_equal(wave, again)  # the seed is reset per utterance


def test_missing_condition_is_an_error(codec, token_list):
    est = np.zeros((3, Q), dtype=np.int64)
    with pytest.raises(ResynthesisError, match="phonemes"):
        Resynthesizer(models(token_list)["ar_nar"], codec, token_list).synthesize(est, None, None, 100)
    with pytest.raises(ResynthesisError, match="semantic"):
        Resynthesizer(models(token_list)["masked"], codec).synthesize(est, None, None, 100)


def test_scp_outputs_then_merge_jobs(tmp_path, codec, token_list):
    rng = np.random.default_rng(0)
    lengths = {"a": 500, "b": 333}
    scp_lines = []
    for key, n in lengths.items():
        sf.write(tmp_path / f"{key}.wav", 0.1 * rng.standard_normal(n), FS)
        scp_lines.append(f"{key} {tmp_path / key}.wav\n")
    (tmp_path / "wav.scp").write_text("".join(scp_lines))
    tokens = {key: rng.integers(0, B, (Q, codec.num_frames(n))) for key, n in lengths.items()}
    write_tokens(tmp_path / "est.ark", tmp_path / "est.scp", tokens, B)
    (tmp_path / "phonemes").write_text("".join(f"{k} {v}\n" for k, v in PHONEMES.items()))
    resynthesizer = Resynthesizer(models(token_list)["ar_nar"], codec, token_list)
    for job, key in enumerate(lengths, 1):
        (tmp_path / f"keys.{job}").write_text(f"{key}\n")
        synthesize_scp(resynthesizer, tmp_path / "est.scp", tmp_path / "wav.scp", tmp_path / f"out.{job}",
                       phonemes_path=tmp_path / "phonemes", key_file=tmp_path / f"keys.{job}")
    stats = json.loads((tmp_path / "out.1/rtf.json").read_text())
    timing = stats["components"]["synthesizer"]
    assert timing["calls"] == 1 and timing["audio_s"] == pytest.approx(500 / FS) and stats["rtf"] > 0

    syn_inference.main(["--merge_dirs", str(tmp_path / "out.1"), str(tmp_path / "out.2"),
                        "--output_dir", str(tmp_path / "out")])
    speech = read_kv(tmp_path / "out/speech.scp")
    assert list(speech) == ["a", "b"]
    for key, path in speech.items():
        audio, fs = sf.read(path)
        assert fs == FS and len(audio) == lengths[key] and sf.info(path).subtype == "PCM_16"
    merged = json.loads((tmp_path / "out/rtf.json").read_text())
    assert merged["input_audio_s"] == pytest.approx(833 / FS)
    assert merged["components"]["synthesizer"]["calls"] == 2
    with pytest.raises(DataDirError, match="also in an earlier"):
        merge_outputs([tmp_path / "out.1", tmp_path / "out"], tmp_path / "dup")


@pytest.mark.integration
def test_bin_loads_an_espnet_experiment(tmp_path, codec, token_list):
    """config.yaml + .pth as ESPnet's trainer writes them, the codec as a DAC weights file."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from sepalm_espnet.synthesizer.codec import save_dac

    model = models(token_list)["masked"]
    torch.save(model.state_dict(), tmp_path / "model.pth")
    conf = dict(num_codebooks=Q, codebook_size=B, condition="semantic", semantic_vocab_size=10, inference_steps=[3, 1], **LAYERS)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dict(model="masked", model_conf=conf, token_list=None)))
    save_dac(codec.model, tmp_path / "codec.pth")
    sf.write(tmp_path / "a.wav", np.zeros(777), FS)
    (tmp_path / "wav.scp").write_text(f"a {tmp_path / 'a.wav'}\n")
    write_tokens(tmp_path / "est.ark", tmp_path / "est.scp", {"a": np.ones((Q, codec.num_frames(777)), dtype=int)}, B)
    (tmp_path / "semantic").write_text("a 1 2 3\n")
    command = [sys.executable, "-m", "sepalm_espnet.bin.syn_inference", "--train_config", tmp_path / "config.yaml",
               "--model_file", tmp_path / "model.pth", "--codec", tmp_path / "codec.pth", "--est_tokens",
               tmp_path / "est.scp", "--wav_scp", tmp_path / "wav.scp", "--semantic", tmp_path / "semantic",
               "--output_dir", tmp_path / "out", "--top_k", "5", "--steps", "2", "1"]
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run(list(map(str, command)), cwd=repo, text=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)})
    assert run.returncode == 0, run.stderr[-3000:]
    audio, fs = sf.read(read_kv(tmp_path / "out/speech.scp")["a"])
    assert fs == FS and audio.shape == (777,)
