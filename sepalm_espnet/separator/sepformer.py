"""SepFormer masking network (Subakan et al., 2021) as an ESPnet separator.

ESPnet's enh model wraps a separator between an encoder and a decoder. SepFormer's learned
filterbank is exactly ESPnet's `conv` encoder (Conv1d without bias, then ReLU) and `conv`
decoder (ConvTranspose1d without bias), so this module is only the masking network: it maps
encoder features (B, frames, N) to one masked feature tensor per speaker.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from espnet2.enh.separator.abs_separator import AbsSeparator
from torch import nn


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(length, dim) sin/cos table, built per call so no sequence length limit exists."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table.to(dtype)


class PositionalTransformer(nn.Module):
    """Pre-LN transformer encoder with sinusoidal positions added at its input (SpeechBrain's
    SBTransformerBlock with use_positional_encoding and norm_before, LayerNorm eps 1e-6)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int,
        num_layers: int,
        dropout: float,
        activation: str = "relu",
        layer_norm_eps: float = 1e-6,
    ):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation=activation,
            layer_norm_eps=layer_norm_eps,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model, eps=layer_norm_eps), enable_nested_tensor=False
        )

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """sequence: (batch, length, d_model)."""
        positions = sinusoidal_positions(
            sequence.size(1), sequence.size(2), sequence.device, sequence.dtype
        )
        return self.layers(sequence + positions)


class DualPathBlock(nn.Module):
    """Intra-chunk then inter-chunk transformer, each normalized and added residually."""

    def __init__(self, d_model: int, **transformer_options):
        super().__init__()
        self.intra = PositionalTransformer(d_model, **transformer_options)
        self.inter = PositionalTransformer(d_model, **transformer_options)
        self.intra_norm = nn.GroupNorm(1, d_model, eps=1e-8)
        self.inter_norm = nn.GroupNorm(1, d_model, eps=1e-8)

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        """chunks: (B, D, chunk_size, num_chunks)."""
        batch, dim, chunk_size, num_chunks = chunks.shape
        # Every chunk is one sequence of chunk_size frames.
        intra = chunks.permute(0, 3, 2, 1).reshape(batch * num_chunks, chunk_size, dim)
        intra = self.intra(intra).reshape(batch, num_chunks, chunk_size, dim).permute(0, 3, 2, 1)
        chunks = chunks + self.intra_norm(intra)
        # Every position within a chunk is one sequence across chunks.
        inter = chunks.permute(0, 2, 3, 1).reshape(batch * chunk_size, num_chunks, dim)
        inter = self.inter(inter).reshape(batch, chunk_size, num_chunks, dim).permute(0, 3, 1, 2)
        return chunks + self.inter_norm(inter)


class SepFormerSeparator(AbsSeparator):
    """Dual-path transformer masking network; paper size: 2 blocks x (8 + 8) layers, 26M.

    The same computation as SpeechBrain's Dual_Path_Model (norm "ln", skip_around_intra, no
    linear layer after intra/inter, no global positions), so its published checkpoints import
    (separator/speechbrain_import.py) and give the same outputs.
    """

    def __init__(
        self,
        input_dim: int,
        num_spk: int = 2,
        d_model: int = 256,
        nhead: int = 8,
        dim_feedforward: int = 1024,
        num_layers: int = 8,
        num_blocks: int = 2,
        chunk_size: int = 250,
        dropout: float = 0.0,
        activation: str = "relu",
        layer_norm_eps: float = 1e-6,
    ):
        super().__init__()
        if num_spk < 1:
            raise ValueError(f"num_spk must be >= 1, got {num_spk}")
        if chunk_size < 2 or chunk_size % 2:
            raise ValueError(f"chunk_size must be even (50% overlap), got {chunk_size}")
        self._num_spk = num_spk
        self.chunk_size = chunk_size
        self.input_norm = nn.GroupNorm(1, input_dim, eps=1e-8)
        self.input_projection = nn.Conv1d(input_dim, d_model, 1, bias=False)
        self.blocks = nn.ModuleList(
            DualPathBlock(
                d_model,
                nhead=nhead,
                dim_feedforward=dim_feedforward,
                num_layers=num_layers,
                dropout=dropout,
                activation=activation,
                layer_norm_eps=layer_norm_eps,
            )
            for _ in range(num_blocks)
        )
        self.speaker_split = nn.Sequential(nn.PReLU(), nn.Conv2d(d_model, d_model * num_spk, 1))
        self.output = nn.Sequential(nn.Conv1d(d_model, d_model, 1), nn.Tanh())
        self.output_gate = nn.Sequential(nn.Conv1d(d_model, d_model, 1), nn.Sigmoid())
        self.mask_projection = nn.Conv1d(d_model, input_dim, 1, bias=False)

    @property
    def num_spk(self) -> int:
        return self._num_spk

    def forward(
        self,
        input: torch.Tensor,
        ilens: torch.Tensor,
        additional: Optional[Dict] = None,
    ) -> Tuple[List[torch.Tensor], torch.Tensor, OrderedDict]:
        """input: encoder features (B, frames, N) -> ([masked (B, frames, N)] * num_spk, ilens, masks)."""
        batch, frames, _ = input.shape
        hidden = self.input_projection(self.input_norm(input.transpose(1, 2)))
        chunks = self.split_chunks(hidden)
        for block in self.blocks:
            chunks = block(chunks)
        chunks = self.speaker_split(chunks)
        chunks = chunks.reshape(batch * self.num_spk, -1, chunks.size(2), chunks.size(3))
        hidden = self.overlap_add(chunks, frames)
        hidden = self.output(hidden) * self.output_gate(hidden)
        masks = torch.relu(self.mask_projection(hidden))
        masks = masks.reshape(batch, self.num_spk, -1, frames).transpose(2, 3).unbind(dim=1)
        masked = [input * mask for mask in masks]
        others = OrderedDict((f"mask_spk{i + 1}", mask) for i, mask in enumerate(masks))
        return masked, ilens, others

    def split_chunks(self, sequence: torch.Tensor) -> torch.Tensor:
        """(B, D, frames) -> (B, D, chunk_size, num_chunks): module-level split_chunks."""
        return split_chunks(sequence, self.chunk_size)

    def overlap_add(self, chunks: torch.Tensor, frames: int) -> torch.Tensor:
        """Inverse of split_chunks up to the factor 2: module-level overlap_add."""
        return overlap_add(chunks, frames)


def split_chunks(sequence: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(B, D, frames) -> (B, D, chunk_size, num_chunks), hop chunk_size / 2.

    Half a chunk of zeros on both sides makes every frame covered by exactly two chunks. The
    right end is padded as SpeechBrain pads it (1 to chunk_size more frames, to a whole number
    of chunks): the inter-chunk attention and the norms see every padded chunk, so the
    amount of padding is part of the model.
    """
    hop = chunk_size // 2
    frames = sequence.size(-1)
    tail = chunk_size - (hop + frames % chunk_size) % chunk_size
    padded = nn.functional.pad(sequence, (hop, hop + tail))
    return padded.unfold(-1, chunk_size, hop).transpose(2, 3)


def overlap_add(chunks: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of split_chunks up to the factor 2: sums the two chunks covering each frame."""
    batch, dim, chunk_size, num_chunks = chunks.shape
    hop = chunk_size // 2
    first_halves = chunks[:, :, :hop].transpose(2, 3).reshape(batch, dim, num_chunks * hop)
    second_halves = chunks[:, :, hop:].transpose(2, 3).reshape(batch, dim, num_chunks * hop)
    summed = nn.functional.pad(first_halves, (0, hop)) + nn.functional.pad(second_halves, (hop, 0))
    return summed[:, :, hop : hop + frames]
