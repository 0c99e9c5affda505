"""Codec training with descript's losses: a few steps on a tiny DAC, loaded back through DacCodec."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from sepalm_espnet.bin import codec_train as codec_train_bin
from sepalm_espnet.synthesizer.codec import DacCodec
from sepalm_espnet.synthesizer.codec_train import CodecTrainer, CodecTrainError, load_config, merge_config

REPO = Path(__file__).resolve().parents[2]
FS = 16000
# Smallest useful DAC: hop 40, 2 codebooks of 16 entries; one step takes ~0.1 s on CPU.
TINY = dict(
    arch=dict(sample_rate=FS, encoder_dim=4, encoder_rates=[2, 4, 5], latent_dim=16, decoder_dim=16,
              n_codebooks=2, codebook_size=16, codebook_dim=4),
    batch_size=2, segment_seconds=0.05, log_interval=2, optim_conf=dict(lr=3e-3, betas=[0.8, 0.99]),
    mel_loss=dict(n_mels=[10, 20], window_lengths=[64, 256], mel_fmin=[0, 0], mel_fmax=[None, None]),
    stft_loss=dict(window_lengths=[256, 64]),
)


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions run slower on two busy cores than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def chirp(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    return (0.3 * np.sin(2 * np.pi * (200 + 400 * rng.random()) * t * (1 + t))).astype(np.float32)


def test_loss_decreases_on_one_batch():
    torch.set_flush_denormal(True)
    trainer = CodecTrainer(merge_config(TINY))
    audio = torch.from_numpy(np.stack([chirp(0.05, 0), chirp(0.05, 1)]))[:, None]
    losses = [trainer.step(audio)["loss"] for _ in range(12)]
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_discriminator_adds_descripts_gan_losses():
    trainer = CodecTrainer(merge_config({**TINY, "discriminator": dict(rates=[], periods=[2, 3], fft_sizes=[128])}))
    stats = trainer.step(torch.from_numpy(chirp(0.05, 2))[None, None])
    assert {"adv/disc_loss", "adv/gen_loss", "adv/feat_loss"} <= set(stats)
    assert all(math.isfinite(value) for value in stats.values())


def test_bin_trains_saves_scores_and_skips_a_finished_dir(tmp_path):
    scp_lines = []
    for index in range(3):
        path = tmp_path / f"u{index}.wav"
        sf.write(path, chirp(0.3, index), FS)
        scp_lines.append(f"u{index} {path}\n")
    (tmp_path / "train.scp").write_text("".join(scp_lines[:2]))
    (tmp_path / "valid.scp").write_text(scp_lines[2])
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump({**TINY, "max_steps": 50}))
    out = tmp_path / "exp"
    argv = ["--config", str(tmp_path / "conf.yaml"), "--wav_scp", str(tmp_path / "train.scp"),
            "--valid_wav_scp", str(tmp_path / "valid.scp"), "--output_dir", str(out), "--max_steps", "3"]
    codec_train_bin.main(argv)
    assert yaml.safe_load((out / "config.yaml").read_text())["max_steps"] == 3
    scores = json.loads((out / "valid.json").read_text())
    assert scores["n_utterances"] == 1 and math.isfinite(scores["si_snr"])
    assert {"loss.png", "mel_loss.png"} <= {p.name for p in (out / "images").glob("*.png")}  # as ESPnet draws them

    codec = DacCodec.from_pretrained(out / "codec.pth")
    assert (codec.sample_rate, codec.hop_length, codec.n_codebooks, codec.codebook_size) == (FS, 40, 2, 16)
    wave = torch.from_numpy(chirp(0.123, 5))[None]
    assert codec.decode(codec.encode(wave), wave.shape[1]).shape == wave.shape

    before = (out / "codec.pth").stat().st_mtime_ns
    codec_train_bin.main(argv)
    assert (out / "codec.pth").stat().st_mtime_ns == before


def test_mini_recipe_config():
    config = load_config(REPO / "egs2/TEMPLATE/sepalm1/conf/tuning/train_codec_dac_mini.yaml")
    arch = config["arch"]
    assert (arch["sample_rate"], math.prod(arch["encoder_rates"]), arch["n_codebooks"], arch["codebook_size"]) == (
        16000, 320, 4, 256)  # 50 frames/s, the mini synthesizer YAMLs' codebooks
    assert config["discriminator"] is None and config["lambdas"]["mel/loss"] == 15.0


def test_unknown_options_and_no_steps_are_refused(tmp_path):
    with pytest.raises(CodecTrainError, match="unknown"):
        merge_config({"learning_rate": 1})
    with pytest.raises(CodecTrainError, match="unknown losses"):
        merge_config({"lambdas": {"mel": 1.0}})
    (tmp_path / "c.yaml").write_text("max_steps: 0\n")
    with pytest.raises(CodecTrainError, match="max_steps"):
        load_config(tmp_path / "c.yaml")
