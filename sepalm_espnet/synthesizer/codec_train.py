"""Train a small DAC-architecture codec in the recipe, with descript's own losses.

The paper uses the released 16 kHz DAC; the mini recipe (and corpora it has no right to
download weights for) trains `build_dac(**arch)` instead, so the synthesizer has tokens of
the same kind: hop 320 at 16 kHz (50 frames/s), a few codebooks. The objective is descript's
(scripts/train.py, conf/base.yml): multi-scale mel L1 (weight 15), VQ commitment (0.25) and
codebook (1.0) losses from the DAC forward, and, when a `discriminator` is configured, the
multi-period / multi-band discriminator with its least-squares GAN and feature-matching
losses (weights 1 and 2). The STFT, waveform L1 and (negative) SI-SDR losses are computed and
logged; they count only when given a weight in `lambdas`, as in descript's config.

Training reads random crops of the training audio, held in memory (a codec recipe corpus is
small; the paper-scale codec is the released one). The result is written with save_dac, so
DacCodec.from_pretrained loads it like the released weights.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import dac
import numpy as np
import torch
import yaml
from audiotools import AudioSignal
from dac.nn import loss as dac_loss

from sepalm_espnet.data.format import load_mono
from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path, read_kv
from sepalm_espnet.metrics.figures import IMAGES_DIR, plot_curves
from sepalm_espnet.metrics.separation import pesq_or_nan, si_snr
from sepalm_espnet.synthesizer.codec import CodecError, DacCodec, build_dac, save_dac

logger = logging.getLogger(__name__)

CODEC_FILE = "codec.pth"
CONFIG_FILE = "config.yaml"
VALID_FILE = "valid.json"

# descript's conf/base.yml, less the data and model entries; a YAML overrides any of them.
DEFAULT_CONFIG: Dict[str, Any] = dict(
    arch=dict(sample_rate=16000),
    max_steps=1000,
    batch_size=8,
    segment_seconds=0.38,
    seed=0,
    log_interval=50,
    grad_clip=1000.0,
    optim_conf=dict(lr=1.0e-4, betas=[0.8, 0.99]),
    lr_gamma=0.999996,  # ExponentialLR per step
    lambdas={"mel/loss": 15.0, "adv/feat_loss": 2.0, "adv/gen_loss": 1.0,
             "vq/commitment_loss": 0.25, "vq/codebook_loss": 1.0},
    mel_loss=dict(
        n_mels=[5, 10, 20, 40, 80, 160, 320],
        window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
        mel_fmin=[0, 0, 0, 0, 0, 0, 0],
        mel_fmax=[None] * 7,
        pow=1.0,
        clamp_eps=1.0e-5,
        mag_weight=0.0,
    ),
    stft_loss=dict(window_lengths=[2048, 512]),
    # e.g. {rates: [], periods: [2, 3, 5, 7, 11], fft_sizes: [2048, 1024, 512]}; null: no GAN
    discriminator=None,
)


# Every term CodecTrainer.step computes (adv/* only with a discriminator): the keys `lambdas` may weight.
LOSS_NAMES = ("mel/loss", "stft/loss", "waveform/loss", "sisdr/loss", "vq/commitment_loss", "vq/codebook_loss",
              "adv/gen_loss", "adv/feat_loss")


class CodecTrainError(ValueError):
    """The codec training configuration or data is unusable; the message says why."""


def merge_config(overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """DEFAULT_CONFIG with `overrides` on top: dict entries are updated key by key, except
    `lambdas`, which is replaced whole (a loss left out of it has weight 0)."""
    unknown = sorted(set(overrides) - set(DEFAULT_CONFIG))
    if unknown:
        raise CodecTrainError(f"unknown codec training options {unknown}; known: {sorted(DEFAULT_CONFIG)}")
    config = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in overrides.items():
        if isinstance(config[key], dict) and isinstance(value, dict) and key != "lambdas":
            config[key] = {**config[key], **value}
        else:
            config[key] = copy.deepcopy(value)
    unknown_losses = sorted(set(config["lambdas"]) - set(LOSS_NAMES))
    if unknown_losses:
        raise CodecTrainError(f"lambdas: unknown losses {unknown_losses}; known: {list(LOSS_NAMES)}")
    return config


def load_config(path: PathLike, max_steps: Optional[int] = None) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        overrides = yaml.safe_load(f) or {}
    if not isinstance(overrides, dict):
        raise CodecTrainError(f"{path}: expected a mapping of options")
    config = merge_config(overrides)
    if max_steps is not None:
        config["max_steps"] = max_steps
    if config["max_steps"] < 1:
        raise CodecTrainError(f"max_steps must be >= 1, got {config['max_steps']}")
    return config


def load_waves(wav_scps: Sequence[PathLike], sample_rate: int) -> List[np.ndarray]:
    """Every utterance of the scps, mono at the codec rate."""
    waves = []
    for scp in wav_scps:
        for key, value in read_kv(scp).items():
            waves.append(load_mono(value, f"{scp} (key {key})", sample_rate))
    if not waves:
        raise CodecTrainError(f"no audio in {list(map(str, wav_scps))}")
    return waves


def random_crops(waves: Sequence[np.ndarray], batch_size: int, num_samples: int, rng: np.random.Generator) -> torch.Tensor:
    """(B, 1, num_samples) crops of random utterances; shorter ones are zero-padded."""
    batch = np.zeros((batch_size, 1, num_samples), dtype=np.float32)
    for row in batch:
        wave = waves[rng.integers(len(waves))]
        start = rng.integers(max(len(wave) - num_samples, 0) + 1)
        piece = wave[start : start + num_samples]
        row[0, : len(piece)] = piece
    return torch.from_numpy(batch)


class CodecTrainer:
    """descript's generator (and optional discriminator) update, one batch at a time."""

    def __init__(self, config: Mapping[str, Any], device: str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        torch.manual_seed(config["seed"])
        self.model = build_dac(**config["arch"]).to(self.device)
        self.sample_rate = int(self.model.sample_rate)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), **config["optim_conf"])
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, config["lr_gamma"])
        self.mel_loss = dac_loss.MelSpectrogramLoss(**config["mel_loss"]).to(self.device)
        self.stft_loss = dac_loss.MultiScaleSTFTLoss(**config["stft_loss"]).to(self.device)
        self.waveform_loss = dac_loss.L1Loss()
        self.sisdr_loss = dac_loss.SISDRLoss()
        self.gan_loss = None
        if config["discriminator"] is not None:
            discriminator = dac.model.Discriminator(sample_rate=self.sample_rate, **config["discriminator"])
            self.gan_loss = dac_loss.GANLoss(discriminator).to(self.device)
            self.optimizer_d = torch.optim.AdamW(discriminator.parameters(), **config["optim_conf"])
            self.scheduler_d = torch.optim.lr_scheduler.ExponentialLR(self.optimizer_d, config["lr_gamma"])
        self.lambdas = dict(config["lambdas"])

    def step(self, audio: torch.Tensor) -> Dict[str, float]:
        """One update on (B, 1, T) audio; returns every loss term and the weighted total."""
        self.model.train()
        audio = audio.to(self.device)
        out = self.model(audio, self.sample_rate)
        # DAC's decoder returns a few samples fewer than a whole number of hops (6072 of 6080):
        # the losses compare the samples it does produce.
        recons = AudioSignal(out["audio"], self.sample_rate)
        signal = AudioSignal(audio[..., : out["audio"].shape[-1]], self.sample_rate)
        terms: Dict[str, torch.Tensor] = {}
        if self.gan_loss is not None:
            terms["adv/disc_loss"] = self.gan_loss.discriminator_loss(recons, signal)
            self.optimizer_d.zero_grad()
            terms["adv/disc_loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.gan_loss.parameters(), 10.0)
            self.optimizer_d.step()
            self.scheduler_d.step()
            terms["adv/gen_loss"], terms["adv/feat_loss"] = self.gan_loss.generator_loss(recons, signal)
        terms["mel/loss"] = self.mel_loss(recons, signal)
        terms["stft/loss"] = self.stft_loss(recons, signal)
        terms["waveform/loss"] = self.waveform_loss(recons, signal)
        terms["sisdr/loss"] = self.sisdr_loss(signal, recons)  # negative SI-SDR in dB
        terms["vq/commitment_loss"] = out["vq/commitment_loss"]
        terms["vq/codebook_loss"] = out["vq/codebook_loss"]
        loss = sum(weight * terms[name] for name, weight in self.lambdas.items() if name in terms)
        if not torch.isfinite(loss):
            raise CodecTrainError(f"non-finite codec loss: { {k: float(v) for k, v in terms.items()} }")
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config["grad_clip"])
        self.optimizer.step()
        self.scheduler.step()
        stats = {name: float(value.detach()) for name, value in terms.items()}
        stats.update(loss=float(loss), grad_norm=float(grad_norm))
        return stats


def round_trip_scores(codec: DacCodec, wav_scp: PathLike) -> Dict[str, Any]:
    """Mean SI-SNR (dB) and wideband PESQ of encode -> decode over a wav.scp."""
    si_snrs, pesqs = [], []
    for key, value in read_kv(wav_scp).items():
        wave = load_mono(value, f"{wav_scp} (key {key})", codec.sample_rate)
        tokens = codec.encode(torch.from_numpy(wave)[None])
        decoded = codec.decode(tokens, len(wave))[0].cpu().numpy()
        si_snrs.append(si_snr(wave, decoded))
        pesqs.append(pesq_or_nan(wave, decoded, codec.sample_rate, f"{wav_scp} key {key}"))
    scored = [value for value in pesqs if not math.isnan(value)]
    return dict(
        n_utterances=len(si_snrs),
        si_snr=float(np.mean(si_snrs)) if si_snrs else None,
        pesq=float(np.mean(scored)) if scored else None,
        n_pesq_failures=len(pesqs) - len(scored),
    )


def train_codec(
    config: Mapping[str, Any],
    wav_scps: Sequence[PathLike],
    output_dir: PathLike,
    valid_wav_scp: Optional[PathLike] = None,
    device: str = "cpu",
) -> Path:
    """Train for config['max_steps'] steps; writes codec.pth, config.yaml and valid.json.

    A finished output directory (codec.pth and, with a valid scp, valid.json) is left alone.
    """
    out = Path(output_dir)
    codec_path = out / CODEC_FILE
    if codec_path.is_file() and (valid_wav_scp is None or (out / VALID_FILE).is_file()):
        logger.info("%s exists; skipping codec training", codec_path)
        return codec_path
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / CONFIG_FILE) as tmp:
        tmp.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")

    if not codec_path.is_file():
        trainer = CodecTrainer(config, device)
        num_params = sum(p.numel() for p in trainer.model.parameters())
        logger.info("DAC %s: %.2fM parameters, hop %d", config["arch"], num_params / 1e6, trainer.model.hop_length)
        waves = load_waves(wav_scps, trainer.sample_rate)
        segment = int(round(config["segment_seconds"] * trainer.sample_rate))
        segment = max(trainer.model.hop_length, segment - segment % trainer.model.hop_length)
        rng = np.random.default_rng(config["seed"])
        started = time.perf_counter()
        running: Dict[str, float] = {}
        history: List[Dict[str, float]] = []
        for step in range(1, config["max_steps"] + 1):
            stats = trainer.step(random_crops(waves, config["batch_size"], segment, rng))
            for name, value in stats.items():
                running[name] = running.get(name, 0.0) + value
            if step % config["log_interval"] == 0 or step == config["max_steps"]:
                count = step % config["log_interval"] or config["log_interval"]
                summary = ", ".join(f"{name}={value / count:.4g}" for name, value in sorted(running.items()))
                logger.info("step %d/%d (%.1f s): %s", step, config["max_steps"], time.perf_counter() - started, summary)
                history.append({"step": step, **{name: value / count for name, value in running.items()}})
                running = {}
        save_dac(trainer.model.cpu(), codec_path)
        logger.info("wrote %s", codec_path)
        # Curves as ESPnet's trainer draws them for the other components (<exp>/images/).
        plot_curves(history, out / IMAGES_DIR)

    if valid_wav_scp is not None:
        scores = round_trip_scores(DacCodec.from_pretrained(codec_path, device=device), valid_wav_scp)
        logger.info("round trip on %s: %s", valid_wav_scp, scores)
        with atomic_path(out / VALID_FILE) as tmp:
            tmp.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    return codec_path


__all__ = ["CodecError", "CodecTrainError", "CodecTrainer", "load_config", "merge_config", "round_trip_scores", "train_codec"]
