"""Learnability of the re-separator: it learns to extract the speaker its transcript describes.

Two synthetic "speakers": voiced sounds with low (100-220 Hz) and doubled (200-440 Hz) pitch,
each paired with its own phoneme tokens (a* for the low voice, b* for the high one; both
transcripts of a mixture equally long, so only the tokens tell them apart). Four mixtures, one
example per (mixture, speaker), trained through the call ESPnet's trainer makes
(`loss, stats, weight = model(**batch)`), decoded through ReseparationInference.

Measured (one thread, 200 steps, 12 s): SI-SNR of a speaker's estimate conditioned on its own
transcript 13.1 dB on average, on the other speaker's transcript -33.9 dB: a margin of 46.9 dB
on average, 32.9 dB for the worst of the 8 estimates. Asserted: about half of each. With the
phoneme embeddings zeroed the two transcripts give the same estimate and the margin is 0
(checked below, so the test fails for a model that ignores its transcript).
"""
import numpy as np
import pytest
import torch

from sepalm_espnet.metrics.separation import si_snr
from sepalm_espnet.separator.reseparation import TranscriptConditionedSeparator, TranscriptSepFormerModel
from sepalm_espnet.separator.reseparation_inference import ReseparationInference
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import PAD_ID

FS, SAMPLES, MIXTURES, STEPS = 8000, 2000, 4, 200
LOW_TOKENS = [f"a{i}" for i in range(5)]
HIGH_TOKENS = [f"b{i}" for i in range(5)]
TOKENS = TokenList(["<blank>", "<unk>", *LOW_TOKENS, *HIGH_TOKENS, "<sos/eos>"])
# About half of the measured figures (module doc).
OWN_SI_SNR_DB, MEAN_MARGIN_DB, MIN_MARGIN_DB = 6.5, 23.0, 16.0


def two_speaker_mixtures(voiced):
    """[(mixture, [(reference, phonemes) per speaker])]."""
    rng = np.random.default_rng(0)
    mixtures = []
    for index in range(MIXTURES):
        low = voiced(SAMPLES, index, fs=FS)
        high = voiced(SAMPLES, 1000 + index, fs=FS // 2)  # generated at half the rate: pitch doubled
        length = int(rng.integers(5, 11))
        speakers = [(low, " ".join(rng.choice(LOW_TOKENS, length))), (high, " ".join(rng.choice(HIGH_TOKENS, length)))]
        mixtures.append((low + high, speakers))
    return mixtures


def training_batch(mixtures):
    mix, refs, phonemes = [], [], []
    for mixture, speakers in mixtures:
        for reference, text in speakers:
            mix.append(mixture)
            refs.append(reference)
            phonemes.append(TOKENS.encode(text))
    ids = torch.full((len(phonemes), max(map(len, phonemes))), PAD_ID, dtype=torch.long)
    for row, sequence in enumerate(phonemes):
        ids[row, : len(sequence)] = torch.tensor(sequence)
    lengths = torch.full((len(mix),), SAMPLES)
    return dict(speech_mix=torch.from_numpy(np.stack(mix)), phonemes=ids, speech_ref=torch.from_numpy(np.stack(refs)),
                speech_mix_lengths=lengths, phonemes_lengths=torch.tensor([len(p) for p in phonemes]),
                speech_ref_lengths=lengths)


def margins(reseparator, mixtures):
    """(SI-SNR given the own transcript, given the other's, own - other) per estimate, dB."""
    own, other = [], []
    for mixture, speakers in mixtures:
        estimates = [reseparator.extract(mixture, text) for _, text in speakers]
        for n, (reference, _) in enumerate(speakers):
            own.append(si_snr(reference, estimates[n]))
            other.append(si_snr(reference, estimates[1 - n]))
    own, other = np.array(own), np.array(other)
    return own, other, own - other


def test_extracts_the_speaker_of_the_transcript(voiced, one_torch_thread):
    mixtures = two_speaker_mixtures(voiced)
    torch.manual_seed(0)
    separator = TranscriptConditionedSeparator(len(TOKENS), encoder_channel=32, d_model=32, nhead=2, dim_feedforward=64,
                                               num_layers=1, num_blocks=2, chunk_size=50, fs=FS)
    model = TranscriptSepFormerModel(separator).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = training_batch(mixtures)
    for _ in range(STEPS):
        loss, stats, weight = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    assert float(weight) == 2 * MIXTURES

    reseparator = ReseparationInference(model, TOKENS)
    own, other, margin = margins(reseparator, mixtures)
    print(f"own {own.mean():.1f} dB, other {other.mean():.1f} dB, margin {margin.mean():.1f} (min {margin.min():.1f}) dB")
    assert own.mean() > OWN_SI_SNR_DB
    assert margin.mean() > MEAN_MARGIN_DB
    assert margin.min() > MIN_MARGIN_DB

    # Without its phoneme identities the model cannot tell the transcripts apart.
    with torch.no_grad():
        separator.fusion.phoneme_embedding.weight.zero_()
    _, _, blind_margin = margins(reseparator, mixtures)
    assert np.abs(blind_margin).max() < 1e-3
