"""Codec learnability: stage 9's training makes the tokenizer/decoder round trip reconstruct.

A DAC is trained by `train_codec` (what bin/codec_train, the recipe's stage 9, runs) on three
seeded speech-like clips, with train_codec_dac_mini.yaml's objective and optimiser (mel x15,
SI-SDR x1, VQ commitment x0.25 and codebook x1; AdamW lr 1e-3, 4 codebooks of 256 entries)
and a narrower, shorter-hop network. It is loaded back with DacCodec.from_pretrained and the
clips go through the calls the recipe makes: `encode_batch` (token_io.tokenize_wav_scp, the
tokenizer stages) and `decode(tokens, num_samples)` (resynthesize.Resynthesizer.synthesize).
Against the untrained codec (the same seed's initialisation, saved and loaded the same way),
SI-SNR must rise and descript's mel distance fall by the margins below; and the round trip
must equal the trained DAC's own forward, which the losses were computed on, so an inference
path that disagrees with training (codebooks reordered, frames shifted, a codebook left out,
weights not loaded) fails.

Measured (seeds fixed, one thread, 100 steps, ~6 s): SI-SNR -51.6 -> -1.6 dB, mel distance
1.38 -> 0.72, round trip = forward to 1e-7. The mini recipe's own hop-320 network (16/64
channels) learns the waveform far slower: -45 -> -24..-31 dB after 100-160 steps, too slow to
assert within a test's budget.
"""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from audiotools import AudioSignal
from dac.nn.loss import MelSpectrogramLoss

from sepalm_espnet.metrics.separation import si_snr
from sepalm_espnet.synthesizer.codec import DacCodec, save_dac
from sepalm_espnet.synthesizer.codec_train import CodecTrainer, load_config, train_codec

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "egs2/mini_librimix/sepalm1/conf/tuning/train_codec_dac_mini.yaml"
FS = 16000
# The mini config's network at a quarter of its width and hop 40 instead of 320 (98k parameters
# instead of 1.3M); codebooks, objective and optimiser are the config's.
ARCH = dict(encoder_dim=8, encoder_rates=[2, 4, 5], latent_dim=32, decoder_dim=32)
STEPS = 100
BATCH_SIZE = 2  # of the config's 0.2 s crops
CLIP_SAMPLES = (8000, 8000, 8000)  # 0.5 s each
# Measured after 100 steps: +50.1 dB SI-SNR to -1.6 dB, mel distance x0.52.
MIN_SI_SNR_GAIN_DB = 30.0
MIN_SI_SNR_DB = -10.0
MAX_MEL_RATIO = 0.65
# descript's mel distance (its MelSpectrogramLoss: L1 of log10 mel magnitudes) at one scale,
# 80 mels over 1024-sample windows, not the 7 scales training uses.
MEL_DISTANCE = MelSpectrogramLoss(
    n_mels=[80], window_lengths=[1024], mel_fmin=[0.0], mel_fmax=[None], pow=1.0, clamp_eps=1e-5, mag_weight=0.0
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def flush_denormals():
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def mel_distance(reference: np.ndarray, estimate: np.ndarray) -> float:
    signal = lambda wave: AudioSignal(torch.from_numpy(wave)[None, None], FS)  # noqa: E731
    return float(MEL_DISTANCE(signal(estimate), signal(reference)))


def round_trip(codec: DacCodec, clips) -> list:
    """The recipe's tokenizer (encode_batch) then its decoder call (decode with the length)."""
    tokens = codec.encode_batch(clips)
    for item, clip in zip(tokens, clips):
        assert tuple(item.shape) == (4, codec.num_frames(len(clip))) and item.dtype == torch.int64
    return [codec.decode(item[None], len(clip))[0].numpy() for item, clip in zip(tokens, clips)]


def scores(codec: DacCodec, clips) -> tuple:
    decoded = round_trip(codec, clips)
    return (
        float(np.mean([si_snr(clip, out) for clip, out in zip(clips, decoded)])),
        float(np.mean([mel_distance(clip, out) for clip, out in zip(clips, decoded)])),
        decoded,
    )


def test_trained_codec_round_trip_reconstructs_its_training_clips(tmp_path, voiced):
    config = load_config(CONFIG, max_steps=STEPS)
    assert config["discriminator"] is None and config["arch"]["n_codebooks"] == 4
    config["arch"] = {**config["arch"], **ARCH}
    config.update(batch_size=BATCH_SIZE, log_interval=STEPS)

    clips = [voiced(n, seed) for seed, n in enumerate(CLIP_SAMPLES)]
    lines = []
    for index, clip in enumerate(clips):
        sf.write(tmp_path / f"clip{index}.wav", clip, FS, subtype="FLOAT")
        lines.append(f"clip{index} {tmp_path / f'clip{index}.wav'}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))

    # CodecTrainer seeds torch before building the model: this is train_codec's starting point.
    save_dac(CodecTrainer(config).model, tmp_path / "untrained.pth")
    untrained = DacCodec.from_pretrained(tmp_path / "untrained.pth")
    codec_path = train_codec(config, [tmp_path / "wav.scp"], tmp_path / "exp")
    trained = DacCodec.from_pretrained(codec_path)
    assert (trained.sample_rate, trained.hop_length, trained.n_codebooks, trained.codebook_size) == (FS, 40, 4, 256)

    si_snr_before, mel_before, _ = scores(untrained, clips)
    si_snr_after, mel_after, decoded = scores(trained, clips)
    figures = (
        f"round trip of the training clips after {STEPS} steps: SI-SNR {si_snr_before:.2f} -> {si_snr_after:.2f} dB "
        f"(gain {si_snr_after - si_snr_before:.2f}, required >= {MIN_SI_SNR_GAIN_DB}; level required >= "
        f"{MIN_SI_SNR_DB}), mel distance {mel_before:.3f} -> {mel_after:.3f} "
        f"(ratio {mel_after / mel_before:.3f}, required <= {MAX_MEL_RATIO})"
    )
    # The tokenizer/decoder round trip is the trained DAC's forward (encode, quantize, decode),
    # the output its losses were computed on (a few trailing samples aside, which decode pads).
    audio = torch.from_numpy(np.stack(clips))[:, None]
    with torch.no_grad():
        forward = trained.model(audio, FS)["audio"][:, 0].numpy()
    produced = forward.shape[-1]
    mismatch = max(float(np.abs(forward[i] - out[:produced]).max()) for i, out in enumerate(decoded))
    figures += f"; round trip vs DAC forward: max |difference| {mismatch:.3g} (required < 1e-4)"

    failed = [
        name for name, ok in (
            ("SI-SNR gain", si_snr_after - si_snr_before >= MIN_SI_SNR_GAIN_DB),
            ("SI-SNR level", si_snr_after >= MIN_SI_SNR_DB),
            ("mel ratio", mel_after <= MAX_MEL_RATIO * mel_before),
            # Samples peak at 0.3: 1e-4 is float rounding, far below any change of codes or frames.
            ("inference = training forward", mismatch < 1e-4),
        ) if not ok
    ]
    print(figures)
    assert not failed, f"failed: {failed}; {figures}"
