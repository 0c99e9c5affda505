"""Mixture encoders of SLM-SS: waveform -> frame features the model's transformer encoder reads.

The paper uses WavLM-large features; `conv` is a small trainable encoder the offline mini
recipe (and CI) can train from scratch. Every encoder is registered in MIXTURE_ENCODERS and
built by name from a config's `encoder` / `encoder_conf`.

Padding: a batch is zero-padded to its longest mixture. An encoder's features at the real
frames of a mixture must not depend on how much padding follows it (the batched and the one
by one decoding must agree), so `conv` zeroes the samples after each length and the features
of every padded frame before each layer reads them.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import librosa
import torch
import torch.nn.functional as F
from torch import nn

from sepalm_espnet.slm_ss.wavlm_encoder import WavLMMixtureEncoder
from sepalm_espnet.synthesizer.layers import lengths_to_mask


class MixtureEncoder(nn.Module):
    """Interface: (B, N) waveforms at `sample_rate` -> (B, T_enc, output_dim) features."""

    output_dim: int
    sample_rate: int = 16000

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N) float waveform, (B,) sample lengths -> (B, T_enc, D) features, (B,) frame lengths."""
        raise NotImplementedError


FEATURES = ("logmel", "waveform")


class ConvMixtureEncoder(MixtureEncoder):
    """Log-mel energies (or a strided conv over the waveform), then residual 1-D conv layers.

    Frame t looks at the `window_length` samples centred on samples [t * frame_shift,
    (t + 1) * frame_shift); a mixture of N samples has ceil(N / frame_shift) frames (at least
    one), the frame count of a codec with that hop (frame_shift 320: DAC 16 kHz's 20 ms).
    """

    def __init__(
        self,
        output_dim: int = 256,
        feature: str = "logmel",
        n_mels: int = 80,
        sample_rate: int = 16000,
        frame_shift: int = 320,
        num_layers: int = 2,
        kernel_size: int = 5,
        window_length: Optional[int] = None,
    ):
        """feature: "logmel" (fixed STFT + mel filters, n_mels bands) or "waveform" (a learnt
        strided conv, output_dim filters; n_mels unused). window_length: samples per frame's
        analysis window (None: 2 * frame_shift)."""
        super().__init__()
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r} of the conv mixture encoder; choose from {FEATURES}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (centred convs keep the frame count), got {kernel_size}")
        window_length = 2 * frame_shift if window_length is None else window_length
        if window_length < frame_shift:
            raise ValueError(f"window_length {window_length} is shorter than frame_shift {frame_shift}: "
                             "samples between the windows would be ignored")
        self.output_dim = output_dim
        self.feature = feature
        self.sample_rate = sample_rate
        self.frame_shift = frame_shift
        self.window_length = window_length
        if feature == "logmel":
            mel = librosa.filters.mel(sr=sample_rate, n_fft=window_length, n_mels=n_mels)
            self.register_buffer("mel_filters", torch.from_numpy(mel).float(), persistent=False)
            self.register_buffer("window", torch.hann_window(window_length), persistent=False)
            frontend_dim = n_mels
        else:
            self.waveform_conv = nn.Conv1d(1, output_dim, window_length, stride=frame_shift)
            frontend_dim = output_dim
        self.input_projection = nn.Linear(frontend_dim, output_dim)
        self.layer_norms = nn.ModuleList(nn.LayerNorm(output_dim) for _ in range(num_layers))
        self.convs = nn.ModuleList(
            nn.Conv1d(output_dim, output_dim, kernel_size, padding=kernel_size // 2) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(output_dim)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """ceil(N / frame_shift), at least 1: attention over a memory needs one key."""
        return torch.div(lengths + self.frame_shift - 1, self.frame_shift, rounding_mode="floor").clamp(min=1)

    def framed_input(self, speech: torch.Tensor, lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Samples after each length zeroed, padded so that frame t's window is centred on its hop."""
        speech = speech.float() * lengths_to_mask(lengths, speech.size(1))
        left = (self.window_length - self.frame_shift) // 2
        total = (num_frames - 1) * self.frame_shift + self.window_length
        return F.pad(speech, (left, max(0, total - left - speech.size(1))))[:, :total]

    def frontend(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, T, frontend_dim)."""
        if self.feature == "waveform":
            return F.gelu(self.waveform_conv(samples[:, None])).transpose(1, 2)
        spectrum = torch.stft(samples, n_fft=self.window_length, hop_length=self.frame_shift, window=self.window,
                              center=False, return_complex=True)
        mel = self.mel_filters @ spectrum.abs().square()
        return ((torch.log10(mel.clamp_min(1e-10)) + 4.0) / 4.0).transpose(1, 2)  # Whisper's scaling

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if speech.ndim != 2:
            raise ValueError(f"expected (B, N) single-channel waveforms, got {tuple(speech.shape)}")
        frame_lengths = self.frame_lengths(lengths)
        num_frames = max(1, -(-speech.size(1) // self.frame_shift))
        valid = lengths_to_mask(frame_lengths, num_frames)[..., None]
        x = self.input_projection(self.frontend(self.framed_input(speech, lengths, num_frames))) * valid
        for norm, conv in zip(self.layer_norms, self.convs):
            hidden = F.gelu(norm(x)) * valid  # padded frames read as zeros, as beyond the end
            x = (x + conv(hidden.transpose(1, 2)).transpose(1, 2)) * valid
        return self.final_norm(x) * valid, frame_lengths


MIXTURE_ENCODERS: Dict[str, type] = {"conv": ConvMixtureEncoder, "wavlm": WavLMMixtureEncoder}


def build_mixture_encoder(name: str, conf: Mapping[str, Any]) -> MixtureEncoder:
    """`name` is a key of MIXTURE_ENCODERS, `conf` its constructor's options."""
    if name not in MIXTURE_ENCODERS:
        raise ValueError(f"unknown mixture encoder {name!r}; choose from {sorted(MIXTURE_ENCODERS)}")
    try:
        return MIXTURE_ENCODERS[name](**dict(conf))
    except TypeError as error:  # an option the encoder does not take
        raise TypeError(f"mixture encoder {name!r}: {error}") from error
