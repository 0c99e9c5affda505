"""Re-separation model (Table 3 (a)): shapes, gradients, phoneme padding, the configs' sizes,
the light builder, and the inference path (scp in, speech.scp out, the bin's JOB split)."""
import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sepalm_espnet.bin import resep_inference
from sepalm_espnet.data.audio import read_audio, write_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, write_kv
from sepalm_espnet.separator.reseparation import (
    ReseparatorBuilder,
    TranscriptConditionedSeparator,
    TranscriptSepFormerModel,
)
from sepalm_espnet.separator.reseparation_inference import (
    ReseparationInference,
    ReseparationInferenceError,
    ReseparationOptions,
    reseparate_scp,
)
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import PAD_ID

REPO = Path(__file__).resolve().parents[2]
TUNING = REPO / "egs2/TEMPLATE/sepalm1/conf/tuning"
FS = 8000
TOKENS = ["<blank>", "<unk>", "h", "ə", "l", "oʊ", "|", "w", "ɜː", "d", "<sos/eos>"]
TINY = dict(encoder_channel=16, d_model=16, nhead=2, dim_feedforward=32, num_layers=1, num_blocks=2,
            chunk_size=10, fs=FS)


def tiny_separator(seed: int = 0) -> TranscriptConditionedSeparator:
    torch.manual_seed(seed)
    return TranscriptConditionedSeparator(len(TOKENS), **TINY).eval()


def padded(sequences, pad=PAD_ID):
    ids = torch.full((len(sequences), max(map(len, sequences))), pad, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
    return ids, torch.tensor([len(s) for s in sequences])


@pytest.mark.parametrize("samples", [400, 803])
def test_one_estimate_per_transcript_with_the_mixtures_length(samples):
    separator = tiny_separator()
    ids, lengths = padded([[2, 3, 4], [5, 6, 7, 8, 9]])
    with torch.no_grad():
        estimate = separator(torch.randn(2, samples), torch.tensor([samples, samples]), ids, lengths)
    assert estimate.shape == (2, samples) and torch.isfinite(estimate).all()


def test_padded_phonemes_give_what_each_item_gives_alone():
    """Padding never enters an attention: the batch with the short transcript padded to 7
    equals each (mixture, transcript) alone."""
    separator = tiny_separator()
    mixture = torch.randn(1, 600).expand(2, -1)
    transcripts = [[2, 3, 4], [5, 6, 7, 8, 9, 2, 3]]
    ids, lengths = padded(transcripts)
    with torch.no_grad():
        batch = separator(mixture, torch.tensor([600, 600]), ids, lengths)
        for row, transcript in enumerate(transcripts):
            alone = separator(mixture[:1], torch.tensor([600]), torch.tensor([transcript]), torch.tensor([len(transcript)]))
            torch.testing.assert_close(batch[row], alone[0], atol=1e-5, rtol=1e-5)
    # Different transcripts of one mixture give different estimates.
    assert (batch[0] - batch[1]).abs().max() > 1e-4


def test_empty_transcript_reads_as_one_blank():
    separator = tiny_separator()
    mixture = torch.randn(1, 500)
    with torch.no_grad():
        empty = separator(mixture, torch.tensor([500]), torch.zeros(1, 0, dtype=torch.long), torch.tensor([0]))
        blank = separator(mixture, torch.tensor([500]), torch.tensor([[0]]), torch.tensor([1]))
    torch.testing.assert_close(empty, blank)


def test_loss_is_minus_si_snr_and_every_parameter_learns():
    model = TranscriptSepFormerModel(tiny_separator()).train()
    ids, lengths = padded([[2, 3, 4], [5, 6]])
    reference = torch.randn(2, 640)
    batch = dict(speech_mix=reference + torch.randn(2, 640), phonemes=ids, speech_ref=reference,
                 speech_mix_lengths=torch.tensor([640, 640]), phonemes_lengths=lengths,
                 speech_ref_lengths=torch.tensor([640, 640]), utt_id=["u_spk1", "u_spk2"])
    loss, stats, weight = model(**batch)
    assert float(weight) == 2 and float(stats["loss"]) == pytest.approx(-float(stats["si_snr"]), abs=1e-6)
    # The mixture's SI-SNR here is about 0 dB: si_snri is the estimate's over it.
    assert abs(float(stats["si_snr"] - stats["si_snri"])) < 3
    loss.backward()
    without_gradient = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without_gradient == []


def test_reference_lengths_must_match_the_mixtures():
    model = TranscriptSepFormerModel(tiny_separator())
    ids, lengths = padded([[2, 3]])
    with pytest.raises(ValueError, match="speech_ref lengths"):
        model(speech_mix=torch.randn(1, 400), phonemes=ids, speech_ref=torch.randn(1, 400),
              speech_mix_lengths=torch.tensor([400]), phonemes_lengths=lengths, speech_ref_lengths=torch.tensor([390]))


@pytest.mark.parametrize("name, parameters", [
    ("train_resep_sepformer_paper.yaml", 26_931_201),  # the separator's 25.7M + the fusion's 1.3M
    ("train_resep_sepformer_mini.yaml", 224_897),
])
def test_configs_build_their_models(name, parameters):
    """Sizes stated in the configs' headers, plus d_model parameters per phoneme token."""
    config = yaml.safe_load((TUNING / name).read_text())
    assert config["model"] == "transcript_sepformer"
    assert config["iterator_type"] == "sequence"  # crops would cut the audio, not its transcript
    assert len(config["fold_length"]) == 3  # speech_mix, phonemes, speech_ref
    with torch.device("meta"):
        model = TranscriptConditionedSeparator(phoneme_vocab_size=80, **config["model_conf"])
    d_model = config["model_conf"]["d_model"]
    assert sum(p.numel() for p in model.parameters()) == parameters + 80 * d_model


def test_builder_reads_the_token_list_file_and_keeps_the_list(tmp_path):
    TokenList(TOKENS).save(tmp_path / "tokens.txt")
    args = argparse.Namespace(model="transcript_sepformer", model_conf=TINY, token_list=str(tmp_path / "tokens.txt"))
    model = ReseparatorBuilder.build_model(args)
    assert model.separator.fusion.phoneme_embedding.num_embeddings == len(TOKENS)
    assert args.token_list == TOKENS  # what config.yaml then holds
    with pytest.raises(ValueError, match=r"choose from \['transcript_sepformer'\]"):
        ReseparatorBuilder.build_model(argparse.Namespace(model="tse", model_conf={}, token_list=TOKENS))
    with pytest.raises(ValueError, match="needs --token_list"):
        ReseparatorBuilder.build_model(argparse.Namespace(model="transcript_sepformer", model_conf={}, token_list=None))


@pytest.fixture
def trained_files(tmp_path):
    """config.yaml + weights as ESPnet's trainer leaves them (token list saved as a list)."""
    config = {"model": "transcript_sepformer", "model_conf": TINY, "token_list": TOKENS}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    model = TranscriptSepFormerModel(tiny_separator(seed=1))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    return tmp_path / "config.yaml", tmp_path / "model.pth", model


def mixture_dir(tmp_path, lengths, fs=FS):
    rng = np.random.default_rng(0)
    mixtures = {}
    for index, length in enumerate(lengths):
        mixtures[f"utt{index}"] = tmp_path / f"mix/utt{index}.wav"
        write_audio(mixtures[f"utt{index}"], (0.1 * rng.standard_normal(length)).astype(np.float32), fs, subtype="FLOAT")
    write_kv(tmp_path / "wav.scp", {k: str(v) for k, v in mixtures.items()})
    phonemes = {f"utt{i}_spk{n}": text for i in range(len(lengths))
                for n, text in ((1, "h ə l oʊ"), (2, "w ɜː l d | x"))}
    write_kv(tmp_path / "phonemes", phonemes)
    return tmp_path / "wav.scp", tmp_path / "phonemes"


def test_inference_gives_what_the_model_gives(trained_files, tmp_path):
    config, model_file, model = trained_files
    reseparator = ReseparationInference.from_files(config, model_file)
    assert reseparator.fs == FS
    mix_scp, phonemes = mixture_dir(tmp_path, [800, 1203])
    outputs = reseparate_scp(reseparator, mix_scp, phonemes, tmp_path / "out")
    assert list(read_kv(tmp_path / "out/speech.scp")) == ["utt0_spk1", "utt0_spk2", "utt1_spk1", "utt1_spk2"]
    mixture, _ = read_audio(read_kv(mix_scp)["utt1"])
    ids = torch.tensor([[TOKENS.index(t) for t in "w ɜː l d |".split()] + [TOKENS.index("<unk>")]])  # x: unknown
    with torch.no_grad():
        expected = model.separator(torch.from_numpy(mixture)[None], torch.tensor([1203]), ids, torch.tensor([6]))[0]
    written, fs = read_audio(outputs["utt1_spk2"])
    assert fs == FS and written.shape == (1203,)
    np.testing.assert_allclose(written, expected.numpy(), atol=1e-5)


def test_mixture_keyed_by_estimate_and_missing_ones(trained_files, tmp_path):
    config, model_file, _ = trained_files
    reseparator = ReseparationInference.from_files(config, model_file)
    mix_scp, phonemes = mixture_dir(tmp_path, [800])
    per_estimate = {f"utt0_spk{n}": read_kv(mix_scp)["utt0"] for n in (1, 2)}
    write_kv(tmp_path / "mix_per_estimate.scp", per_estimate)
    by_utt = reseparate_scp(reseparator, mix_scp, phonemes, tmp_path / "a")
    by_estimate = reseparate_scp(reseparator, tmp_path / "mix_per_estimate.scp", phonemes, tmp_path / "b")
    for key in per_estimate:
        np.testing.assert_array_equal(read_audio(by_utt[key])[0], read_audio(by_estimate[key])[0])
    write_kv(tmp_path / "other.scp", {"utt9": str(tmp_path / "mix/utt0.wav")})
    with pytest.raises(DataDirError, match="no entry for 'utt0_spk1'"):
        reseparate_scp(reseparator, tmp_path / "other.scp", phonemes, tmp_path / "c")


def test_another_rate_is_refused_unless_resampling(trained_files, tmp_path):
    config, model_file, _ = trained_files
    reseparator = ReseparationInference.from_files(config, model_file)
    mix_scp, phonemes = mixture_dir(tmp_path, [1600], fs=2 * FS)
    with pytest.raises(ReseparationInferenceError, match="16000 Hz, the model's rate is 8000 Hz"):
        reseparate_scp(reseparator, mix_scp, phonemes, tmp_path / "a")
    outputs = reseparate_scp(reseparator, mix_scp, phonemes, tmp_path / "b", options=ReseparationOptions(resample=True))
    assert read_audio(outputs["utt0_spk1"])[0].shape == (800,)


def test_bin_splits_by_key_file(trained_files, tmp_path):
    config, model_file, _ = trained_files
    mix_scp, phonemes = mixture_dir(tmp_path, [800, 960])
    write_kv(tmp_path / "keys.1.scp", {"utt1_spk2": "x", "utt0_spk1": "x"})
    resep_inference.main([
        "--train_config", str(config), "--model_file", str(model_file), "--mix_scp", str(mix_scp),
        "--phonemes", str(phonemes), "--key_file", str(tmp_path / "keys.1.scp"), "--output_dir", str(tmp_path / "out"),
    ])
    scp = read_kv(tmp_path / "out/speech.scp")
    assert list(scp) == ["utt0_spk1", "utt1_spk2"]
    assert read_audio(scp["utt1_spk2"])[0].shape == (960,)
