"""The aligner (paper §3.5, eq. 9-10): s̃ = iSTFT(α1 ⊙ STFT(ŝ) + α2 ⊙ STFT(s*)).

The re-synthesized speech s* carries the corrected content but no reliable phase; the
preliminary estimate ŝ has the phase of the mixture. As in Separate-and-Diffuse (Lutati et al.,
2024), a small network looks at both spectrograms and mixes them bin by bin with complex
weights, so it can rotate and rescale s* towards ŝ where that pays off in SI-SNR.

Choices made here (the paper gives only "a two-layer CNN with residual connections, 0.13M
parameters"):

- α1, α2 are complex, carried as (real, imag) channel pairs: a real weight could rescale s* but
  never compensate its phase shift.
- The CNN predicts Δ and α = [1, 0] + Δ, with the output projection initialised to zero: the
  untrained aligner returns ŝ, so training starts from the separator's result instead of a
  random mix. (As with any zero-initialised last layer, at the very first step only that
  projection receives gradient; the other layers do from the first update on.)
- Features are both spectrograms divided by the RMS of STFT(ŝ): the weights no longer depend
  on the recording level, while the level of s* relative to ŝ stays visible.
- An optional coarse alignment shifts s* by the integer lag that maximises its
  cross-correlation with ŝ, for synthesizers whose output drifts by more than the few
  milliseconds a per-bin phase can absorb.
- Padding never leaks: the STFT zero-pads (not reflects) at the edges, the CNN zeroes frames
  past each item's end after every layer, and each item is inverted with its own frame count,
  so a padded item comes out as it would alone.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.enh.loss.criterions.time_domain import SISNRLoss
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
}
# Keeps the feature scale finite for an all-silent ŝ.
EPS = 1e-8


def length_mask(lengths: torch.Tensor, total_length: int) -> torch.Tensor:
    """(B, total_length) bool, True inside each item."""
    return torch.arange(total_length, device=lengths.device) < lengths.unsqueeze(1)


def fit_synthesized_length(uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Crop or zero-pad s* to ŝ's length; a reference of another length is a data error.

    The aligner task's preprocessing (an ESPnet `(uid, data) -> data` function). A codec
    decodes whole frames (and an AR synthesizer stops where it likes), so s* rarely has ŝ's
    length, while the chunk iterator needs all three signals equally long.
    """
    length = len(data["speech_est"])
    synthesized = data["speech_syn"][:length]
    data["speech_syn"] = np.pad(synthesized, (0, length - len(synthesized)))
    if "speech_ref" in data and len(data["speech_ref"]) != length:
        raise ValueError(
            f"{uid}: speech_ref has {len(data['speech_ref'])} samples, speech_est {length}"
        )
    return data


class AbsAligner(nn.Module, ABC):
    """Combines the preliminary estimate ŝ and the re-synthesized s* into the final s̃."""

    @abstractmethod
    def forward(
        self, speech_est: torch.Tensor, speech_syn: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """(B, T) ŝ and (B, T) s* (already fitted to ŝ's length) -> (B, T) s̃, zero past `lengths`."""


class STFTAligner(AbsAligner):
    """Per-bin complex mixing weights from a residual CNN over both spectrograms.

    Default width (85 channels, two 3x3 residual layers between 1x1 projections) gives
    130,989 parameters, the paper's 0.13M.

    The CNN runs channels-last only without autograd (the layout follows the ops; same numbers
    to ~1e-6). Measured with torch 2.13 on 2 AVX2 cores, 3 items of 2.6 s
    (bench/aligner_layout_speed.py): inference 1.3-1.45x faster in channels-last, but a
    training step 1.4-1.8x slower, because oneDNN's channels-last weight (and bias) gradient of
    the 3x3 layers took 1.2 s where the contiguous one took 0.35 s.
    """

    def __init__(
        self,
        n_fft: int = 512,
        hop_length: int = 128,
        window: str = "hann",
        hidden_channels: int = 85,
        num_layers: int = 2,
        kernel_size: int = 3,
        max_lag_ms: Optional[float] = None,
        fs: int = 16000,
    ):
        super().__init__()
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {sorted(WINDOWS)}, got {window!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the spectrogram size, got {kernel_size}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", WINDOWS[window](n_fft), persistent=False)
        self.max_lag = 0 if max_lag_ms is None else round(max_lag_ms * fs / 1000)

        # 4 channels in and out: (real, imag) of ŝ and s*; of Δα1 and Δα2.
        self.input_projection = nn.Conv2d(4, hidden_channels, 1)
        self.residual_layers = nn.ModuleList(
            nn.Conv2d(hidden_channels, hidden_channels, kernel_size, padding=kernel_size // 2)
            for _ in range(num_layers)
        )
        self.activation = nn.ReLU()
        self.output_projection = nn.Conv2d(hidden_channels, 4, 1)
        nn.init.zeros_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return 1 + torch.div(lengths, self.hop_length, rounding_mode="floor")

    def stft(self, speech: torch.Tensor) -> torch.Tensor:
        """(B, T) -> complex (B, F, frames); float32 even under AMP (FFT sizes, precision)."""
        return torch.stft(
            speech.float(),
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )

    def istft(self, spec: torch.Tensor, lengths: torch.Tensor, total_length: int) -> torch.Tensor:
        """complex (B, F, frames) -> (B, total_length); each item from its own frames only."""

        def invert(item_spec: torch.Tensor, length: int) -> torch.Tensor:
            return torch.istft(
                item_spec, self.n_fft, self.hop_length, window=self.window, center=True, length=length
            )

        if bool((lengths == total_length).all()):
            return invert(spec, total_length)
        items = [
            nn.functional.pad(invert(spec[i, :, :frames], length), (0, total_length - length))
            for i, (length, frames) in enumerate(zip(lengths.tolist(), self.num_frames(lengths).tolist()))
        ]
        return torch.stack(items)

    def coarse_align(
        self, speech_est: torch.Tensor, speech_syn: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Shift s* by the lag in ±max_lag maximising its cross-correlation with ŝ (zero fill).

        Returns the shifted s* and the lags: a positive lag means s* was late and moved earlier.
        """
        total_length = speech_est.size(-1)
        fft_size = 1 << (2 * total_length - 1).bit_length()  # linear, not circular, correlation
        spectrum_product = torch.fft.rfft(speech_est.float(), fft_size).conj() * torch.fft.rfft(
            speech_syn.float(), fft_size
        )
        # correlation[k] = sum_t ŝ[t] s*[t + k]; negative k sit at the end.
        correlation = torch.fft.irfft(spectrum_product, fft_size)
        max_lag = min(self.max_lag, total_length - 1)
        candidate_lags = torch.arange(-max_lag, max_lag + 1, device=speech_est.device)
        lags = candidate_lags[correlation[:, candidate_lags % fft_size].argmax(dim=-1)]
        source_index = torch.arange(total_length, device=speech_est.device) + lags.unsqueeze(1)
        inside = (source_index >= 0) & (source_index < total_length)
        shifted = speech_syn.gather(1, source_index.clamp(0, total_length - 1)) * inside
        return shifted * length_mask(lengths, total_length), lags

    def predict_weights(
        self, spec_est: torch.Tensor, spec_syn: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Complex (B, F, frames) α1, α2 for each bin."""
        frames = self.num_frames(lengths)
        frame_mask = length_mask(frames, spec_est.size(-1))[:, None, None, :]
        # Frames past an item's end still overlap its last samples: leave them out of the scale.
        energy = (spec_est.abs() ** 2 * frame_mask[:, 0]).sum(dim=(1, 2))
        scale = (energy / (frames * spec_est.size(1))).sqrt().clamp_min(EPS)
        features = torch.stack(
            [spec_est.real, spec_est.imag, spec_syn.real, spec_syn.imag], dim=1
        ) / scale[:, None, None, None]
        if not torch.is_grad_enabled():
            features = features.contiguous(memory_format=torch.channels_last)

        hidden = self.input_projection(features * frame_mask) * frame_mask
        for layer in self.residual_layers:
            hidden = (hidden + self.activation(layer(hidden))) * frame_mask
        delta = self.output_projection(hidden).float()
        alpha1 = torch.complex(1.0 + delta[:, 0], delta[:, 1])
        alpha2 = torch.complex(delta[:, 2], delta[:, 3])
        return alpha1, alpha2

    @staticmethod
    def combine(
        spec_est: torch.Tensor, spec_syn: torch.Tensor, alpha1: torch.Tensor, alpha2: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 9 inside the iSTFT."""
        return alpha1 * spec_est + alpha2 * spec_syn

    def forward(
        self, speech_est: torch.Tensor, speech_syn: torch.Tensor, lengths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if speech_syn.shape != speech_est.shape:
            raise ValueError(
                f"s* {tuple(speech_syn.shape)} and ŝ {tuple(speech_est.shape)} differ: "
                "fit s* to ŝ first (fit_synthesized_length)"
            )
        total_length = speech_est.size(-1)
        if lengths is None:
            lengths = torch.full((speech_est.size(0),), total_length, device=speech_est.device)
        mask = length_mask(lengths, total_length)
        speech_est = speech_est * mask
        speech_syn = speech_syn * mask
        if self.max_lag > 0:
            speech_syn, _ = self.coarse_align(speech_est, speech_syn, lengths)
        spec_est, spec_syn = self.stft(speech_est), self.stft(speech_syn)
        alpha1, alpha2 = self.predict_weights(spec_est, spec_syn, lengths)
        return self.istft(self.combine(spec_est, spec_syn, alpha1, alpha2), lengths, total_length)


class AlignerModel(AbsESPnetModel):
    """The aligner as an ESPnet model: loss = -SI-SNR of s̃ against the matched clean reference.

    Batches come from the aligner task: speech_est (ŝ of one estimate), speech_syn (its s*,
    fitted to ŝ's length) and speech_ref (the reference matched to that estimate by the stored
    permutation), zero-padded to the longest item with their `*_lengths` (ESPnet's sequence
    iterator): the loss is the mean over items of -SI-SNR over each item's own samples, so a
    padded batch has the loss (and gradient) of its items taken one at a time. Lengths are
    absent in chunk-iterator batches (every crop is full).
    """

    # Same bound as the separator's SI-SNR criterion: a perfect estimate has a finite loss.
    SI_SNR_CLAMP_DB = 70.0

    def __init__(self, aligner: AbsAligner):
        super().__init__()
        self.aligner = aligner
        self.si_snr_loss = SISNRLoss(clamp_db=self.SI_SNR_CLAMP_DB, zero_mean=False)

    def si_snr(self, reference: torch.Tensor, estimate: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) SI-SNR in dB over each item's own samples (zero-mean there, padding excluded).

        Computed in float64 (returned in the reference's dtype): float32 sums over thousands of
        samples differ with the batch's shape by ~1e-5 dB, float64 ones do not, so a padded
        item scores as it does alone. The cost is nothing next to the CNN's.
        """
        dtype = reference.dtype
        mask = length_mask(lengths, reference.size(-1))
        count = lengths.unsqueeze(1).to(torch.float64)

        def zero_mean(signal: torch.Tensor) -> torch.Tensor:
            signal = signal.to(torch.float64) * mask
            return (signal - signal.sum(dim=1, keepdim=True) / count) * mask

        return -self.si_snr_loss(zero_mean(reference), zero_mean(estimate)).to(dtype)

    def forward(
        self,
        speech_est: torch.Tensor,
        speech_syn: torch.Tensor,
        speech_ref: torch.Tensor,
        speech_est_lengths: Optional[torch.Tensor] = None,
        speech_syn_lengths: Optional[torch.Tensor] = None,
        speech_ref_lengths: Optional[torch.Tensor] = None,
        utt_id: Optional[List[str]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """ESPnet's trainer adds the batch's `utt_id`; the loss does not depend on it."""
        batch_size, total_length = speech_est.shape
        if speech_est_lengths is None:
            speech_est_lengths = torch.full((batch_size,), total_length, device=speech_est.device)
        for name, lengths in (("speech_syn", speech_syn_lengths), ("speech_ref", speech_ref_lengths)):
            if lengths is not None and not torch.equal(lengths, speech_est_lengths):
                raise ValueError(f"{name} lengths {lengths.tolist()} differ from speech_est's")

        aligned = self.aligner(speech_est, speech_syn, speech_est_lengths)
        si_snr = self.si_snr(speech_ref, aligned, speech_est_lengths)
        loss = -si_snr.mean()
        with torch.no_grad():
            stats = dict(
                loss=loss.detach(),
                si_snr=si_snr.mean(),
                si_snr_est=self.si_snr(speech_ref, speech_est, speech_est_lengths).mean(),
                si_snr_syn=self.si_snr(speech_ref, speech_syn, speech_est_lengths).mean(),
            )
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """No normalisation statistics: the aligner normalises each utterance itself."""
        return {}


# `model:` names of the aligner config (the aligner task's ClassChoices use this table).
ALIGNERS = {"stft_cnn": STFTAligner}


class AlignerBuilder:
    """`build_model(args)` of the aligner task, without its imports: espnet2.tasks.abs_task
    and the trainer cost ~15 s a process (sepalm_espnet.tasks.aligner: 19 s, this module: 4 s).
    For inference: `tasks.loading.build_trained_model(AlignerBuilder, config, model_file)`."""

    @staticmethod
    def build_model(args) -> AlignerModel:
        if args.model not in ALIGNERS:
            raise ValueError(f"unknown aligner model '{args.model}'; choose from {sorted(ALIGNERS)}")
        return AlignerModel(ALIGNERS[args.model](**(args.model_conf or {})))
