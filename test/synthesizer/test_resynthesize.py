"""Stage 11 on tiny random models: exact output lengths, finite audio, scp/rtf outputs, JOB merge."""
import ast
import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sepalm_espnet.data.kaldi_dir import read_kv
from sepalm_espnet.synthesizer.ar_nar import ArNarSynthesizer
from sepalm_espnet.utils.job_outputs import merge_job_outputs
from sepalm_espnet.synthesizer.codec import DacCodec, build_dac
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.masked import MaskedSynthesizer
from sepalm_espnet.synthesizer import resynthesize
from sepalm_espnet.synthesizer.resynthesize import (
    ResynthesisError,
    Resynthesizer,
    SynthesisOptions,
    codec_resynthesis_scp,
    synthesize_scp,
)
from sepalm_espnet.synthesizer.token_io import write_tokens

FS, HOP, Q, B = 16000, 40, 2, 16
PHONEMES = {"a": "h ə l oʊ", "b": "t ɛ s t"}
# Added to the random AR head's end-token bias: its outputs then end early, at different steps.
END_BIAS = 1.0
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
    options = SynthesisOptions(top_k=5, guidance_scale=1.5)
    resynthesizer = Resynthesizer(models(token_list)[kind], codec, token_list, options)
    est = np.random.default_rng(0).integers(0, B, (codec.num_frames(num_samples), Q))
    wave = resynthesizer.synthesize(est, "h ə l oʊ", [1, 2, 3], num_samples)
    assert wave.shape == (num_samples,) and wave.dtype == np.float32 and np.all(np.isfinite(wave))
    again = resynthesizer.synthesize(est, "h ə l oʊ", [1, 2, 3], num_samples)
    assert np.array_equal(wave, again)  # the seed is reset per utterance


@pytest.mark.parametrize("kind", ["ar_nar", "masked"])
@pytest.mark.parametrize("guidance", [1.0, 1.5])
def test_a_batch_gives_each_utterance_what_it_gets_alone_under_greedy_decoding(codec, token_list, kind, guidance):
    """Padded est tokens, phonemes and units of different lengths in one generate() call: the
    models mask the padding, so greedy tokens are equal and waves equal to float noise."""
    model = models(token_list)[kind]
    if kind == "ar_nar":  # an end token that competes with the codes, so the AR outputs end at different steps
        with torch.no_grad():
            model.ar.head.bias[model.ar.end_id] += END_BIAS
    resynthesizer = Resynthesizer(model, codec, token_list, SynthesisOptions(temperature=0.0, guidance_scale=guidance))
    rng = np.random.default_rng(3)
    num_samples = [1001, 41, 600, 400]
    est = [rng.integers(0, B, (codec.num_frames(n), Q)) for n in num_samples]
    phonemes = ["h ə l oʊ", "t ɛ s t", "", "h ə"]
    semantic = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 1], [2, 2]]
    tokens = resynthesizer.generate_tokens_batch(est, phonemes, semantic)
    waves = resynthesizer.synthesize_batch(est, phonemes, semantic, num_samples)
    lengths = set()
    for i, n in enumerate(num_samples):
        alone = resynthesizer.generate_tokens(est[i], phonemes[i], semantic[i])
        assert torch.equal(tokens[i], alone), f"utterance {i}"
        lengths.add(round(alone.size(1) / codec.num_frames(n), 3))
        np.testing.assert_allclose(waves[i], resynthesizer.synthesize(est[i], phonemes[i], semantic[i], n), atol=1e-5)
        assert waves[i].shape == (n,)
    if kind == "ar_nar":
        assert len(lengths) > 2 and min(lengths) < 1, f"AR length / cap {lengths}: the test needs outputs ending at different steps"


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
    step = tmp_path / "out"
    (step / "logdir").mkdir(parents=True)
    for job, key in enumerate(lengths, 1):
        (step / f"logdir/keys.{job}.scp").write_text(f"{key}\n")
        synthesize_scp(resynthesizer, tmp_path / "est.scp", tmp_path / "wav.scp", step / f"logdir/output.{job}",
                       phonemes_path=tmp_path / "phonemes", key_file=step / f"logdir/keys.{job}.scp")
    stats = json.loads((step / "logdir/output.1/rtf.json").read_text())
    timing = stats["components"]["synthesizer"]
    assert timing["calls"] == 1 and timing["audio_s"] == pytest.approx(500 / FS) and stats["rtf"] > 0

    merge_job_outputs(step, 2)  # the recipe's merger sums the RTF records
    speech = read_kv(step / "speech.scp")
    assert list(speech) == ["a", "b"]
    for key, path in speech.items():
        audio, fs = sf.read(path)
        assert fs == FS and len(audio) == lengths[key] and sf.info(path).subtype == "PCM_16"
    merged = json.loads((step / "rtf.json").read_text())
    assert merged["input_audio_s"] == pytest.approx(833 / FS)
    assert merged["components"]["synthesizer"]["calls"] == 2


def test_scp_hands_the_synthesizer_time_first_estimate_tokens(tmp_path, codec, token_list):
    """The token ark holds the codec's (Q, T'); generate_tokens_batch takes (T', Q) as in training.

    Stage 11 once passed (Q, T') on: a 20-frame estimate reached the model as Q frames."""
    frames = 20
    tokens = np.random.default_rng(0).integers(0, B, (Q, frames))
    write_tokens(tmp_path / "est.ark", tmp_path / "est.scp", {"a": tokens}, B)
    sf.write(tmp_path / "a.wav", np.zeros(frames * HOP), FS)
    (tmp_path / "wav.scp").write_text(f"a {tmp_path / 'a.wav'}\n")
    (tmp_path / "semantic").write_text("a 1 2 3\n")
    resynthesizer = Resynthesizer(models(token_list)["masked"], codec)
    seen = []
    generate = resynthesizer.generate_tokens_batch
    resynthesizer.generate_tokens_batch = lambda est, *rest: seen.extend(map(np.array, est)) or generate(est, *rest)
    synthesize_scp(resynthesizer, tmp_path / "est.scp", tmp_path / "wav.scp", tmp_path / "out",
                   semantic_path=tmp_path / "semantic")
    assert len(seen) == 1 and np.array_equal(seen[0], tokens.T)


def test_codec_resynthesis_decodes_each_reference_s_tokens_at_its_length(tmp_path, codec):
    rng = np.random.default_rng(0)
    lengths = {"a": 500, "b": 333}
    references = {key: 0.1 * rng.standard_normal(n) for key, n in lengths.items()}
    for key, audio in references.items():
        sf.write(tmp_path / f"{key}.wav", audio, FS)
    (tmp_path / "ref.scp").write_text("".join(f"{key} {tmp_path / key}.wav\n" for key in lengths))
    tokens = dict(zip(lengths, codec.encode_batch(list(references.values()))))
    write_tokens(tmp_path / "ref.ark", tmp_path / "ref_tokens.scp", {k: v.numpy() for k, v in tokens.items()}, B)
    meter = codec_resynthesis_scp(codec, tmp_path / "ref_tokens.scp", tmp_path / "ref.scp", tmp_path / "out")
    speech = read_kv(tmp_path / "out/speech.scp")
    assert list(speech) == ["a", "b"] and meter.rtf > 0
    for key, path in speech.items():
        audio, fs = sf.read(path, dtype="float32")
        expected = codec.decode(tokens[key][None], lengths[key])[0].numpy()
        assert fs == FS and np.allclose(audio, expected, atol=1 / 2**15)  # 16-bit PCM

    (tmp_path / "ref.scp").write_text(f"a {tmp_path / 'b.wav'}\nb {tmp_path / 'b.wav'}\n")  # a's tokens, b's length
    with pytest.raises(ResynthesisError, match="'a': 13 frames for 333 samples"):
        codec_resynthesis_scp(codec, tmp_path / "ref_tokens.scp", tmp_path / "ref.scp", tmp_path / "out2")
    assert not (tmp_path / "out2/speech.scp").exists()


@pytest.mark.integration
def test_bin_loads_an_espnet_experiment(tmp_path, codec, token_list):
    """config.yaml + .pth as ESPnet's trainer writes them, the codec as a DAC weights file."""
    import subprocess
    import sys

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


def test_both_synthesizers_share_one_generate_signature_and_stage_11_does_not_dispatch():
    signatures = [inspect.signature(model.generate) for model in (ArNarSynthesizer, MaskedSynthesizer)]
    names = ["self", "est_tokens", "est_tokens_lengths", "phonemes", "phonemes_lengths", "semantic",
             "semantic_lengths", "options"]
    assert [list(signature.parameters) for signature in signatures] == [names, names]
    assert [p.default for p in signatures[0].parameters.values()] == [p.default for p in signatures[1].parameters.values()]
    assert signatures[0].parameters["options"].default == SynthesisOptions()
    tree = ast.parse(Path(resynthesize.__file__).read_text(encoding="utf-8"))
    type_checks = [ast.unparse(node) for node in ast.walk(tree)
                   if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance"]
    assert not [check for check in type_checks if "Synthesizer" in check], type_checks


def test_each_model_takes_the_other_s_options_and_ignores_them(codec, token_list):
    est = torch.from_numpy(np.random.default_rng(1).integers(0, B, (1, 6, Q)))
    lengths = torch.tensor([6])
    phonemes = torch.tensor([token_list.encode("h ə l oʊ")])
    ar_nar, masked = (models(token_list)[kind].eval() for kind in ("ar_nar", "masked"))
    greedy = SynthesisOptions(temperature=0.0)
    ar_only = SynthesisOptions(temperature=0.0, max_length_ratio=1.5, use_cache=False, steps=(2, 1))
    semantic = dict(semantic=torch.tensor([[1, 2, 3]]), semantic_lengths=torch.tensor([3]))
    for options in (greedy, ar_only):
        tokens, _ = ar_nar.generate(est, lengths, phonemes, torch.tensor([phonemes.size(1)]), **semantic, options=options)
        assert tokens.size(2) == Q
    masked_default = masked.generate(est, lengths, **semantic, options=SynthesisOptions(temperature=0.0, steps=(2, 1)))
    masked_other = masked.generate(est, lengths, **semantic, options=SynthesisOptions(
        temperature=0.0, steps=(2, 1), max_length_ratio=9.0, use_cache=False))
    assert torch.equal(masked_default[0], masked_other[0]) and masked_default[1].tolist() == [6]
    with pytest.raises(ValueError, match="conditioned on phonemes"):
        ar_nar.generate(est, lengths, **semantic)
