"""Text-to-semantic model: phonemes -> speech units, the condition P of the masked synthesizer.

Model code only (tasks/t2s.py trains it); loading a trained one and decoding files is
synthesizer/t2s.py, a layer above the tasks.

The paper (§3.4) takes P from SPEAR-TTS's pretrained w2v-BERT text-to-semantic model, which
is not released; ours is a small encoder-decoder transformer trained in the recipe from the
G2P phonemes of the transcripts (stage 9) to the stage-6 units of the clean speech. Its output
length need not be T': the masked synthesizer stretches P to the T' frames of Ŝ.

Decoder vocabulary: units 0 .. U-1, end U, start U + 1 (the start is input-only). Training is
teacher-forced cross-entropy over [units ; end]; inference is greedy until the end token or a
maximum length. Positions are sinusoidal (layers.segment_positions), so any length works.
Greedy decoding keeps each decoder layer's self-attention keys and values (and the projected
memory) from step to step, so a step costs the same at any length (linear-time decoding; the
uncached path, one full decoder pass per step, stays for the equality test).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

from sepalm_espnet.synthesizer.layers import PAD_ID, KVCache, lengths_to_mask, segment_positions, sinusoidal_encoding

IGNORE_ID = -100  # F.cross_entropy's ignore_index


@dataclass(frozen=True)
class T2SDecodeOptions:
    """Greedy decoding of phoneme texts into semantic units (t2s_inference, stage 11)."""

    batch_size: int = field(default=16, metadata={"help": "utterances decoded at once (batched by length)"})
    max_length: Optional[int] = field(
        default=None, metadata={"help": "most units per utterance (not given: ceil(max_length_ratio * phonemes) + 10)"}
    )
    use_cache: bool = field(default=True, metadata={"help": "keep keys/values between decoding steps (false: recompute)"})

    def __post_init__(self):
        if self.batch_size < 1 or (self.max_length is not None and self.max_length < 1):
            raise ValueError(f"batch_size and max_length must be positive: {self}")


class TextToSemantic(AbsESPnetModel):
    """Encoder over phoneme ids, causal decoder over unit ids (torch.nn.Transformer, pre-norm)."""

    def __init__(
        self,
        phoneme_vocab_size: int,
        unit_vocab_size: int = 1000,
        d_model: int = 256,
        nhead: int = 4,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        max_length_ratio: float = 4.0,
    ):
        """max_length_ratio: inference stops at ceil(ratio * phonemes) + 10 units without an end."""
        super().__init__()
        self.unit_vocab_size = unit_vocab_size
        self.end_id = unit_vocab_size
        self.start_id = unit_vocab_size + 1
        self.d_model = d_model
        self.max_length_ratio = max_length_ratio
        self.phoneme_embedding = nn.Embedding(phoneme_vocab_size, d_model)
        self.unit_embedding = nn.Embedding(unit_vocab_size + 2, d_model)
        self.transformer = nn.Transformer(
            d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.head = nn.Linear(d_model, unit_vocab_size + 1)

    def encode(self, phonemes: torch.Tensor, phonemes_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, L) phoneme ids -> memory (B, L, d) and its padding mask (True = padding)."""
        if phonemes.size(1) == 0 or bool((phonemes_lengths == 0).any()):
            raise ValueError("text-to-semantic: every utterance needs at least one phoneme")
        padding = ~lengths_to_mask(phonemes_lengths, phonemes.size(1))
        x = self.phoneme_embedding(phonemes.clamp(min=0)) + segment_positions(phonemes.size(1), self.d_model, phonemes.device)
        return self.transformer.encoder(x, src_key_padding_mask=padding), padding

    def decode(self, inputs: torch.Tensor, input_padding: Optional[torch.Tensor], memory: torch.Tensor, memory_padding: torch.Tensor) -> torch.Tensor:
        """(B, T) decoder input ids (start + units) -> (B, T, U + 1) logits."""
        length = inputs.size(1)
        x = self.unit_embedding(inputs) + segment_positions(length, self.d_model, inputs.device)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=inputs.device, dtype=torch.bool)
        hidden = self.transformer.decoder(
            x, memory, tgt_mask=causal, tgt_key_padding_mask=input_padding, memory_key_padding_mask=memory_padding,
            tgt_is_causal=True,
        )
        return self.head(hidden)

    def _heads(self, x: torch.Tensor, attention: nn.MultiheadAttention) -> torch.Tensor:
        """(B, S, d) -> (B, heads, S, d / heads)."""
        return x.reshape(x.size(0), x.size(1), attention.num_heads, -1).transpose(1, 2)

    def memory_cache(self, memory: torch.Tensor) -> List[KVCache]:
        """Each decoder layer's cross-attention keys and values of the memory, projected once."""
        caches = []
        for layer in self.transformer.decoder.layers:
            _, w_k, w_v = layer.multihead_attn.in_proj_weight.chunk(3)
            _, b_k, b_v = layer.multihead_attn.in_proj_bias.chunk(3)
            attention = layer.multihead_attn
            caches.append((self._heads(F.linear(memory, w_k, b_k), attention),
                           self._heads(F.linear(memory, w_v, b_v), attention)))
        return caches

    def decode_step(
        self,
        tokens: torch.Tensor,
        position: int,
        memory_kv: Sequence[KVCache],
        memory_padding: torch.Tensor,
        cache: Optional[List[KVCache]] = None,
    ) -> Tuple[torch.Tensor, List[KVCache]]:
        """One greedy step: (B,) input ids at `position` -> (B, U + 1) logits and the grown cache.

        The same computation as `decode` on the whole prefix (nn.TransformerDecoderLayer,
        norm_first, in eval mode), with the earlier positions' keys and values reused.
        """
        x = self.unit_embedding(tokens)[:, None] + sinusoidal_encoding(
            torch.tensor([position], device=tokens.device), self.d_model)
        attend_memory = ~memory_padding[:, None, None, :]
        grown = []
        for index, layer in enumerate(self.transformer.decoder.layers):
            attention = layer.self_attn
            h = layer.norm1(x)
            w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
            b_q, b_k, b_v = attention.in_proj_bias.chunk(3)
            query = self._heads(F.linear(h, w_q, b_q), attention)
            key = self._heads(F.linear(h, w_k, b_k), attention)
            value = self._heads(F.linear(h, w_v, b_v), attention)
            if cache is not None:
                key = torch.cat([cache[index][0], key], dim=2)
                value = torch.cat([cache[index][1], value], dim=2)
            grown.append((key, value))
            mixed = F.scaled_dot_product_attention(query, key, value)  # every cached position is earlier
            x = x + layer.dropout1(attention.out_proj(mixed.transpose(1, 2).reshape(x.shape)))
            cross = layer.multihead_attn
            w_q, _, _ = cross.in_proj_weight.chunk(3)
            b_q, _, _ = cross.in_proj_bias.chunk(3)
            query = self._heads(F.linear(layer.norm2(x), w_q, b_q), cross)
            mixed = F.scaled_dot_product_attention(query, *memory_kv[index], attn_mask=attend_memory)
            x = x + layer.dropout2(cross.out_proj(mixed.transpose(1, 2).reshape(x.shape)))
            x = x + layer._ff_block(layer.norm3(x))
        return self.head(self.transformer.decoder.norm(x))[:, 0], grown

    def forward(
        self,
        phonemes: torch.Tensor,
        phonemes_lengths: torch.Tensor,
        units: torch.Tensor,
        units_lengths: torch.Tensor,
        utt_id: Optional[Sequence[str]] = None,  # ESPnet's trainer passes the batch keys
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Teacher-forced CE over the units and the end token; accuracy over the same."""
        if units.numel() and int(units.max()) >= self.unit_vocab_size:
            raise ValueError(f"units: {int(units.max())} is outside the {self.unit_vocab_size} units of the model")
        batch = units.size(0)
        memory, memory_padding = self.encode(phonemes, phonemes_lengths)
        valid = lengths_to_mask(units_lengths, units.size(1))
        clean = units.clamp(min=0)
        start = clean.new_full((batch, 1), self.start_id)
        inputs = torch.cat([start, clean], dim=1)
        input_padding = ~lengths_to_mask(units_lengths + 1, inputs.size(1))
        logits = self.decode(inputs, input_padding, memory, memory_padding)
        targets = F.pad(clean.masked_fill(~valid, IGNORE_ID), (0, 1), value=IGNORE_ID)
        targets[torch.arange(batch, device=targets.device), units_lengths] = self.end_id
        loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_ID)
        scored = targets != IGNORE_ID
        accuracy = (logits.argmax(dim=-1)[scored] == targets[scored]).float().mean()
        stats = dict(loss=loss.detach(), acc=accuracy.detach())
        return force_gatherable((loss, stats, torch.tensor(batch)), loss.device)

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """No features to normalize: the inputs are ids."""
        return {}

    @torch.no_grad()
    def generate(
        self,
        phonemes: torch.Tensor,
        phonemes_lengths: torch.Tensor,
        max_length: Optional[int] = T2SDecodeOptions.max_length,
        use_cache: bool = T2SDecodeOptions.use_cache,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Greedy units: (B, T) ids (PAD_ID after each length) and the (B,) lengths.

        Each utterance has at least one unit and stops at its end token or at max_length
        units (default: ceil(max_length_ratio * phonemes) + 10). Call it in eval mode.
        """
        memory, memory_padding = self.encode(phonemes, phonemes_lengths)
        memory_kv = self.memory_cache(memory) if use_cache else None
        cache = None
        batch = phonemes.size(0)
        limits = torch.ceil(phonemes_lengths.double() * self.max_length_ratio).long() + 10
        if max_length is not None:
            limits = limits.clamp(max=max_length)
        limits = limits.clamp(min=1)
        lengths = limits.clone()
        finished = torch.zeros(batch, dtype=torch.bool, device=phonemes.device)
        inputs = phonemes.new_full((batch, 1), self.start_id)
        generated: List[torch.Tensor] = []
        for step in range(int(limits.max())):
            if use_cache:
                logits, cache = self.decode_step(inputs[:, -1], step, memory_kv, memory_padding, cache)
            else:
                logits = self.decode(inputs, None, memory, memory_padding)[:, -1]
            if step == 0:  # at least one unit: an empty condition would mean "no text"
                logits[:, self.end_id] = float("-inf")
            tokens = logits.argmax(dim=-1)
            ended = (tokens == self.end_id) & ~finished
            lengths = torch.where(ended, torch.full_like(lengths, step), lengths)
            finished |= ended | (limits <= step + 1)
            generated.append(tokens)
            if bool(finished.all()):
                break
            inputs = torch.cat([inputs, tokens[:, None]], dim=1)
        units = torch.stack(generated, dim=1)[:, : int(lengths.max())]
        return units.masked_fill(~lengths_to_mask(lengths, units.size(1)), PAD_ID), lengths
