"""Speaker similarity and speech scoring: Resemblyzer's shipped encoder tells TTS voices apart; WavLM x-vector loads
from a saved directory; the permutation decides which reference each estimate is compared with."""
import shutil

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

from sepalm_espnet.bin import score_speech
from sepalm_espnet.data.audio import write_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, write_kv
from sepalm_espnet.data.tts import Voice, synthesize
from sepalm_espnet.metrics.speaker import build_speaker_encoder, cosine_similarity_scps
from sepalm_espnet.metrics.speech import read_speech_summary

FS = 16000
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite (text to speech) is not installed")


@pytest.fixture(scope="module")
def resemblyzer():
    return build_speaker_encoder("resemblyzer")


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    """A random WavLMForXVector saved as a hub checkpoint is (config, weights, preprocessor)."""
    path = tmp_path_factory.mktemp("wavlm")
    torch.manual_seed(0)
    config = WavLMConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, tdnn_dim=(16, 16), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
        xvector_output_dim=12, num_buckets=16, max_bucket_distance=32,
    )
    WavLMForXVector(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=FS, do_normalize=True, return_attention_mask=True).save_pretrained(path)
    return str(path)


@needs_flite
def test_resemblyzer_same_voice_scores_higher_than_another_voice(resemblyzer):
    kal_a = synthesize(Voice("flite", "kal16"), "The birch canoe slid on the smooth planks.", FS)
    kal_b = synthesize(Voice("flite", "kal16"), "Glue the sheet to the dark blue background.", FS)
    slt = synthesize(Voice("flite", "slt"), "Glue the sheet to the dark blue background.", FS)
    same, other = resemblyzer.similarity(kal_a, kal_b), resemblyzer.similarity(kal_a, slt)
    assert -1.0 <= other < same <= 1.0 + 1e-6
    assert same - other > 0.05


def test_wavlm_embeddings_are_unit_norm_and_deterministic(tiny_wavlm):
    encoder = build_speaker_encoder("wavlm", tiny_wavlm)
    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    embedding = encoder.embed(audio)
    assert embedding.shape == (12,)
    np.testing.assert_allclose(np.linalg.norm(embedding), 1.0, rtol=1e-6)
    assert encoder.similarity(audio, audio) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="needs a model"):
        build_speaker_encoder("wavlm")


def test_permutation_selects_the_matched_reference(tiny_wavlm, tmp_path):
    encoder = build_speaker_encoder("wavlm", tiny_wavlm)
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(6000).astype(np.float32) * 0.1 for _ in range(2))
    for name, audio in {"a": a, "b": b}.items():
        write_audio(tmp_path / f"{name}.wav", audio, FS, subtype="FLOAT")
    # Estimate 1 is speaker b, estimate 2 speaker a: the permutation says reference 1 <- estimate 2.
    write_kv(tmp_path / "ref1.scp", {"mix1": str(tmp_path / "a.wav")})
    write_kv(tmp_path / "ref2.scp", {"mix1": str(tmp_path / "b.wav")})
    write_kv(tmp_path / "est1.scp", {"mix1": str(tmp_path / "b.wav")})
    write_kv(tmp_path / "est2.scp", {"mix1": str(tmp_path / "a.wav")})
    write_kv(tmp_path / "permutation", {"mix1": "2 1"})
    est = [tmp_path / "est1.scp", tmp_path / "est2.scp"]
    ref = [tmp_path / "ref1.scp", tmp_path / "ref2.scp"]
    matched = cosine_similarity_scps(encoder, est, ref, tmp_path / "permutation")
    assert matched["mix1"] == pytest.approx([1.0, 1.0], abs=1e-5)
    unmatched = cosine_similarity_scps(encoder, est, ref)
    assert max(unmatched["mix1"]) < 0.999

    write_kv(tmp_path / "permutation", {"mix1": "1 1"})
    with pytest.raises(DataDirError, match="mix1"):
        cosine_similarity_scps(encoder, est, ref, tmp_path / "permutation")


def test_score_speech_splits_pool_to_the_unsplit_scores(tiny_wavlm, tmp_path):
    """WER counts against teacher and permuted ground truth, SIM, and the JOB merge."""
    rng = np.random.default_rng(2)
    ref_dir = tmp_path / "ref"
    audio = {}
    for key in ("m1", "m2"):
        for k in (1, 2):
            audio[key, k] = tmp_path / f"wav/{key}_ref{k}.wav"
            write_audio(audio[key, k], rng.standard_normal(4000).astype(np.float32) * 0.1, FS, subtype="FLOAT")
    for k in (1, 2):
        write_kv(ref_dir / f"spk{k}.scp", {key: str(audio[key, k]) for key in ("m1", "m2")})
    write_kv(ref_dir / "text_spk1", {"m1": "hello world", "m2": "a b c"})
    write_kv(ref_dir / "text_spk2", {"m1": "good day", "m2": "x y"})
    write_kv(tmp_path / "permutation", {"m1": "1 2", "m2": "2 1"})
    # Output speech in estimate order: for m2 estimate 1 is reference speaker 2.
    write_kv(tmp_path / "out1.scp", {"m1": str(audio["m1", 1]), "m2": str(audio["m2", 2])})
    write_kv(tmp_path / "out2.scp", {"m1": str(audio["m1", 2]), "m2": str(audio["m2", 1])})
    write_kv(tmp_path / "hyp1", {"m1": "Hello, world!", "m2": "x z"})
    write_kv(tmp_path / "hyp2", {"m1": "good day", "m2": "a b c"})
    write_kv(tmp_path / "ct1", {"m1": "HELLO WORLD", "m2": "X Y"})
    write_kv(tmp_path / "ct2", {"m1": "GOOD DAY", "m2": "A B D"})
    common = [
        "--speech_scps", str(tmp_path / "out1.scp"), str(tmp_path / "out2.scp"), "--ref_dir", str(ref_dir),
        "--permutation", str(tmp_path / "permutation"), "--hyp_texts", str(tmp_path / "hyp1"), str(tmp_path / "hyp2"),
        "--teacher_texts", str(tmp_path / "ct1"), str(tmp_path / "ct2"), "--sim_backend", "wavlm", "--sim_model", tiny_wavlm,
    ]
    score_speech.main(common + ["--out_dir", str(tmp_path / "all")])
    write_kv(tmp_path / "keys.1", {"m1": ""})
    write_kv(tmp_path / "keys.2", {"m2": ""})
    for job in (1, 2):
        score_speech.main(common + ["--out_dir", str(tmp_path / f"split.{job}"), "--key_file", str(tmp_path / f"keys.{job}")])
    score_speech.main(["--out_dir", str(tmp_path / "merged"), "--merge_dirs", str(tmp_path / "split.1"), str(tmp_path / "split.2")])

    unsplit = read_speech_summary(tmp_path / "all")
    assert unsplit["wer_gt"] == pytest.approx(100 * 1 / 9) and unsplit["wer_gt_words"] == 9
    assert unsplit["wer_teacher"] == pytest.approx(100 * 2 / 9)
    assert unsplit["sim"] == pytest.approx(1.0, abs=1e-5) and unsplit["sim_count"] == 4
    assert unsplit["n_utterances"] == 2
    merged = read_speech_summary(tmp_path / "merged")
    assert merged == pytest.approx(unsplit)
    assert read_kv(tmp_path / "merged/text_hyp_spk1") == read_kv(tmp_path / "all/text_hyp_spk1")
    assert list(read_kv(tmp_path / "merged/sim")) == ["m1", "m2"]

    with pytest.raises(SystemExit, match="m1"):
        score_speech.main(["--out_dir", str(tmp_path / "dup"), "--merge_dirs", str(tmp_path / "split.1"), str(tmp_path / "all")])
