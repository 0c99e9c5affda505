"""What every codec of the codec slot shares: batched encode/decode with exact length handling.

A codec turns (B, T) waveforms at its `sample_rate` into (B, n_codebooks, ceil(T / hop)) int64
codebook indices and back into exactly T samples. `TokenCodec` checks the inputs, pads them to
whole hops and fits the decoded length; a subclass (codec.DacCodec, encodec.EncodecCodec) only
runs its model on whole hops (`_encode_codes`, `_decode_audio`) and says what the model is.
"""
from __future__ import annotations

import abc
from typing import List, Optional, Sequence

import numpy as np
import torch


class CodecError(ValueError):
    """A codec checkpoint or codec input is unusable; the message says why."""


class TokenCodec(abc.ABC):
    """A frozen codec model in eval mode; tokens are (B, Q, T') int64 codebook indices."""

    # Names the model in errors about what it returned.
    codec_name = "the codec"

    def __init__(self, model: torch.nn.Module, n_codebooks: int, device: str = "cpu"):
        """`n_codebooks`: how many codebooks `encode` gives, already checked by the subclass."""
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._n_codebooks = n_codebooks

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """The rate `encode` expects and `decode` returns; callers resample to it."""

    @property
    @abc.abstractmethod
    def hop_length(self) -> int:
        """Samples a token frame stands for."""

    @property
    @abc.abstractmethod
    def codebook_size(self) -> int:
        """Entries of each codebook: tokens lie in [0, codebook_size)."""

    @property
    @abc.abstractmethod
    def total_codebooks(self) -> int:
        """Codebooks the model has (decode accepts any first q of them)."""

    @abc.abstractmethod
    def _encode_codes(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) float32 on `device`, T whole hops -> (B, n_codebooks, T / hop) integer codes."""

    @abc.abstractmethod
    def _decode_audio(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, q, T') int64 on `device`, checked -> (B, about T' * hop) float; decode fits the length."""

    @property
    def n_codebooks(self) -> int:
        return self._n_codebooks

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Tokens per codebook for `num_samples` input samples: ceil(num_samples / hop)."""
        return -(-num_samples // self.hop_length)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, T) float waveform at `sample_rate` -> (B, n_codebooks, ceil(T / hop)) int64.

        The input is zero-padded to whole hops, so equal inputs give equal tokens whether
        encoded alone or in a batch of equal lengths.
        """
        if wav.ndim != 2 or not wav.is_floating_point():
            raise CodecError(f"encode expects a (B, T) float tensor, got {tuple(wav.shape)} {wav.dtype}")
        num_samples = wav.shape[-1]
        if num_samples == 0:
            raise CodecError("encode: the input has 0 samples")
        frames = self.num_frames(num_samples)
        padded = torch.nn.functional.pad(wav, (0, frames * self.hop_length - num_samples))
        codes = self._encode_codes(padded.to(self.device, torch.float32).unsqueeze(1))
        if codes.shape[1:] != (self.n_codebooks, frames):
            raise CodecError(f"{self.codec_name} produced {tuple(codes.shape[1:])} codes for {self.n_codebooks} "
                             f"codebooks of {frames} hops; unsupported architecture")
        return codes.long()

    def encode_batch(self, waves: Sequence[np.ndarray]) -> List[torch.Tensor]:
        """Encode 1-D waveforms of different lengths together: (n_codebooks, ceil(len / hop)) each.

        The shorter ones are zero-padded to the longest; the encoder then sees that padding, so
        their last frames can differ slightly from encoding them alone: batch similar lengths
        together (token_io sorts by length).
        """
        lengths = [len(wave) for wave in waves]
        batch = torch.zeros(len(waves), max(lengths))
        for row, wave in zip(batch, waves):
            row[: len(wave)] = torch.as_tensor(wave)
        codes = self.encode(batch).cpu()
        return [item[:, : self.num_frames(length)] for item, length in zip(codes, lengths)]

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        """(B, q, T') tokens, q <= the model's codebooks -> (B, length) float in [-1, 1].

        `length` defaults to T' * hop; an input length given back restores it exactly.
        """
        if tokens.ndim != 3 or tokens.is_floating_point():
            raise CodecError(f"decode expects (B, Q, T') integer tokens, got {tuple(tokens.shape)} {tokens.dtype}")
        if not 1 <= tokens.shape[1] <= self.total_codebooks:
            raise CodecError(f"decode: {tokens.shape[1]} codebooks given, the model has {self.total_codebooks}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.codebook_size):
            raise CodecError(f"decode: token values must be in [0, {self.codebook_size})")
        frames = tokens.shape[-1]
        length = frames * self.hop_length if length is None else length
        if frames == 0 or self.num_frames(length) != frames:
            raise CodecError(f"decode: {frames} frames cannot hold {length} samples (hop {self.hop_length})")
        audio = self._decode_audio(tokens.to(self.device, torch.long))
        shortfall = length - audio.shape[-1]
        # Missing trailing samples (a decoder's transposed convolutions can lose some) are silence.
        return torch.nn.functional.pad(audio, (0, shortfall)) if shortfall > 0 else audio[:, :length]
