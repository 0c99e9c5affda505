"""SLM-SS (arXiv 2601.19533): generative speech separation over codec tokens.

A mixture encoder (registry: encoders.py) and a bidirectional transformer make the memory. An
attention encoder-decoder writes codebook 0 of BOTH speakers as one serialized sequence
(serialized output training)

    <sos> spk1 tokens <sc> spk2 tokens <eos>

and a NAR transformer then fills codebooks 1..Q-1 of each speaker from [memory ; that
speaker's lower codebooks] ("hybrid decoding": T AR steps instead of Q * T).

Decoder positions restart at 0 after <sc> and a segment embedding says which speaker is being
written: the input at position p of a segment predicts frame p of that speaker, so both
speakers' frame t share position t, as the memory frame of the same time does when the encoder
runs at the codec's frame rate (conv with frame_shift = the hop; WavLM and DAC 16 kHz, both 50
frames/s); at other rates (EnCodec 24 kHz: 75/s) cross-attention learns the mapping.

Training: teacher-forced CE of the serialized sequence (codes, <sc>, <eos>); with
speaker_order "pit" the loss of both serializations (spk1 first, spk2 first) is computed and
each example keeps the smaller (decoding never permutes: the model writes first whichever
speaker it learnt to). Plus the NAR CE of one random codebook 1..Q-1 of both speakers.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

from sepalm_espnet.slm_ss.encoders import build_mixture_encoder
from sepalm_espnet.synthesizer.ar_nar import IGNORE_ID, ar_nar_training_output, cross_entropy_and_accuracy
from sepalm_espnet.synthesizer.layers import (
    PAD_ID,
    CachedDecoderLayer,
    CodebookHeads,
    KVCache,
    MultiCodebookEmbedding,
    bidirectional_encoder,
    check_codec_tokens,
    lengths_to_mask,
    sample_tokens,
    segment_positions,
    sinusoidal_encoding,
)

logger = logging.getLogger(__name__)

SPEAKER_ORDERS = ("pit", "given")
STATUSES = ("ok", "capped_no_sc", "capped_no_eos")


@dataclass(frozen=True)
class SlmSsDecodeOptions:
    """Decoding options of SlmSsModel.generate (stage 4 with an SLM-SS separator).

    The NAR is greedy, one pass per codebook: it reads codebooks < c only, so a second pass
    over codebook c would repeat the same prediction (no "NAR iterations" option)."""

    temperature: float = field(default=0.0, metadata={"help": "AR sampling temperature; 0: greedy"})
    top_k: int = field(default=0, metadata={"help": "AR: sample from the k most likely tokens only; 0: no top-k filter"})
    top_p: float = field(default=1.0, metadata={"help": "AR nucleus sampling mass; 1.0: no nucleus filter"})
    max_length_ratio: float = field(
        default=1.2,
        metadata={"help": "AR cap per speaker: ceil(ratio * the mixture's codec frame count) frames; speaker 1 "
                          "running past it gets <sc> forced (status capped_no_sc), speaker 2 running past it ends "
                          "the decoding (capped_no_eos), so the AR takes at most 2 * cap + 2 steps"},
    )
    use_cache: bool = field(
        default=True, metadata={"help": "AR: reuse self-attention keys/values across steps (off: a slow cross-check)"}
    )
    seed: Optional[int] = field(
        default=0,
        metadata={"help": "torch's seed, set at the start of each generate() call, so an output depends neither on "
                          "what ran before nor on the JOB split (None: not reset)"},
    )

    def __post_init__(self):
        if self.max_length_ratio <= 0:
            raise ValueError(f"max_length_ratio must be > 0, got {self.max_length_ratio}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")

    def reseed(self) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed)

    def speaker_cap(self, num_frames: int) -> int:
        """Most frames the AR may write per speaker for a mixture of num_frames codec frames."""
        return max(1, math.ceil(self.max_length_ratio * num_frames))


@dataclass
class SlmSsOutput:
    """One mixture's separation: tokens[k] (T_k, num_codebooks) int64 of speaker k, on the CPU
    (T_k may be 0: the caller outputs silence), and the AR's status (STATUSES)."""

    tokens: List[torch.Tensor]
    status: str


class CachedCrossAttentionDecoderLayer(CachedDecoderLayer):
    """CachedDecoderLayer plus cross-attention to the memory (pre-norm: self, cross, feed-forward).

    The memory's keys/values (memory_keys_values) depend on the memory only: generate()
    computes them once and every step reuses them.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__(d_model, nhead, dim_feedforward, dropout)
        self.cross_attention_norm = nn.LayerNorm(d_model)
        self.cross_query = nn.Linear(d_model, d_model)
        self.cross_key_value = nn.Linear(d_model, 2 * d_model)
        self.cross_attention_out = nn.Linear(d_model, d_model)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, d) -> (B, H, S, d_head)."""
        batch, length, d_model = x.shape
        return x.view(batch, length, self.nhead, d_model // self.nhead).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, -1)

    def memory_keys_values(self, memory: torch.Tensor) -> KVCache:
        key, value = self.cross_key_value(memory).chunk(2, dim=-1)
        return self.split_heads(key), self.split_heads(value)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        return self.merge_heads(F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout))

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor,
        memory_kv: KVCache,
        memory_mask: torch.Tensor,
        cache: Optional[KVCache] = None,
    ) -> Tuple[torch.Tensor, KVCache]:
        """x (B, S_new, d); attention_mask bool (B or 1, 1, S_new, S_cached + S_new) and memory_mask
        (B, 1, 1, S_mem), True = attend; returns the new x and the extended self-attention cache."""
        batch, new_length, d_model = x.shape
        heads = self.qkv(self.attention_norm(x)).view(batch, new_length, 3, self.nhead, d_model // self.nhead)
        query, key, value = heads.permute(2, 0, 3, 1, 4)  # each (B, H, S_new, d_head)
        if cache is not None:
            key = torch.cat([cache[0], key], dim=2)
            value = torch.cat([cache[1], value], dim=2)
        x = x + self.residual_dropout(self.attention_out(self.attend(query, key, value, attention_mask)))
        cross_query = self.split_heads(self.cross_query(self.cross_attention_norm(x)))
        attended = self.attend(cross_query, memory_kv[0], memory_kv[1], memory_mask)
        x = x + self.residual_dropout(self.cross_attention_out(attended))
        x = x + self.residual_dropout(self.feedforward(self.feedforward_norm(x)))
        return x, (key, value)


def causal_mask(length: int, device: torch.device, cached: int = 0) -> torch.Tensor:
    """(1, 1, S, cached + S): new position i (after `cached` ones) sees keys 0..cached + i.
    Built for the new rows only, so a cached step costs O(cached), not O(cached^2). Padding
    sits after each sequence's end, where no real position looks: no per-row key mask needed."""
    return torch.ones(length, cached + length, dtype=torch.bool, device=device).tril(diagonal=cached)[None, None]


@dataclass
class SerializedSequences:
    """Teacher-forcing inputs and targets of `<sos> first <sc> second <eos>`, (B, L) each.

    Input i predicts target i; segment 0/1 is the speaker being written and position the frame
    of that speaker the target is (or the <sc> / <eos> after its last frame)."""

    inputs: torch.Tensor
    segments: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor  # IGNORE_ID after each sequence's end


class SerializedTokenDecoder(nn.Module):
    """AR decoder of codebook 0: ids 0..V-1 codes, V <sc>, V+1 <eos>, V+2 <sos> (input only)."""

    def __init__(self, codebook_size: int, d_model: int, nhead: int, num_layers: int, dim_feedforward: int,
                 dropout: float):
        super().__init__()
        self.d_model = d_model
        self.sc_id = codebook_size
        self.eos_id = codebook_size + 1
        self.sos_id = codebook_size + 2
        self.token_embedding = nn.Embedding(codebook_size + 3, d_model)
        self.segment_embedding = nn.Embedding(2, d_model)
        self.layers = nn.ModuleList(
            CachedCrossAttentionDecoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, codebook_size + 2)

    def serialize(
        self, first: torch.Tensor, first_lengths: torch.Tensor, second: torch.Tensor, second_lengths: torch.Tensor
    ) -> SerializedSequences:
        """(B, T1), (B, T2) codes (valid up to their lengths) -> SerializedSequences."""
        total = int((first_lengths + second_lengths).max()) + 2
        index = torch.arange(total, device=first.device)[None]
        end1, end2 = first_lengths[:, None], (first_lengths + second_lengths + 1)[:, None]
        first_codes = F.pad(first, (0, total)).gather(1, index.expand(first.size(0), -1))
        second_index = (index - end1 - 1).clamp(min=0, max=max(second.size(1) - 1, 0))
        second_codes = F.pad(second, (0, 1)).gather(1, second_index)
        targets = torch.full_like(first_codes, IGNORE_ID)
        targets = torch.where(index < end1, first_codes, targets)
        targets = torch.where(index == end1, torch.full_like(targets, self.sc_id), targets)
        targets = torch.where((index > end1) & (index < end2), second_codes, targets)
        targets = torch.where(index == end2, torch.full_like(targets, self.eos_id), targets)
        start = targets.new_full((targets.size(0), 1), self.sos_id)
        inputs = torch.cat([start, targets[:, :-1]], dim=1).clamp(min=0)  # padded inputs: any real id
        in_second = index > end1
        return SerializedSequences(inputs, in_second.long(), torch.where(in_second, index - end1 - 1, index), targets)

    def embed(self, tokens: torch.Tensor, segments: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return (self.token_embedding(tokens) + self.segment_embedding(segments)
                + sinusoidal_encoding(positions, self.d_model))

    def memory_keys_values(self, memory: torch.Tensor) -> List[KVCache]:
        return [layer.memory_keys_values(memory) for layer in self.layers]

    def forward(
        self,
        embedded: torch.Tensor,
        memory_kv: List[KVCache],
        memory_valid: torch.Tensor,
        caches: Optional[List[KVCache]] = None,
    ) -> Tuple[torch.Tensor, List[KVCache]]:
        """Embedded inputs (B, S_new, d) after the cached ones (none: the whole sequence, causal)
        -> logits (B, S_new, V + 2) and the extended caches."""
        if caches is None:
            mask = causal_mask(embedded.size(1), embedded.device)
            caches = [None] * len(self.layers)
        else:  # the new position(s) after everything cached: all keys up to themselves
            cached = caches[0][0].size(2)
            mask = causal_mask(embedded.size(1), embedded.device, cached)
        memory_mask = memory_valid[:, None, None, :]
        x = embedded
        new_caches = []
        for layer, layer_memory, cache in zip(self.layers, memory_kv, caches):
            x, cache = layer(x, mask, layer_memory, memory_mask, cache)
            new_caches.append(cache)
        return self.head(self.final_norm(x)), new_caches


class MemoryNarPredictor(nn.Module):
    """Bidirectional transformer over [projected memory ; codebooks 0..c-1 of one speaker, summed]
    predicting codebook c (1..Q-1) of every frame of that speaker (ar_nar.NarCodebookPredictor
    with the memory as prefix)."""

    def __init__(self, num_codebooks: int, codebook_size: int, d_model: int, nhead: int, num_layers: int,
                 dim_feedforward: int, dropout: float):
        super().__init__()
        self.d_model = d_model
        self.memory_projection = nn.Linear(d_model, d_model)
        # Inputs are codebooks 0..Q-2; outputs codebooks 1..Q-1, one head and stage each.
        self.code_embedding = MultiCodebookEmbedding(num_codebooks - 1, codebook_size, d_model)
        self.stage_embedding = nn.Embedding(num_codebooks - 1, d_model)
        self.encoder = bidirectional_encoder(d_model, nhead, dim_feedforward, dropout, num_layers)
        self.heads = CodebookHeads(num_codebooks - 1, d_model, codebook_size)

    def forward(
        self, memory: torch.Tensor, memory_valid: torch.Tensor, lower_codes: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """lower_codes (B, T, c): codebooks 0..c-1 -> logits (B, T, codebook_size) of codebook c.

        Positions restart at 0 in each segment, so memory frame t and token frame t share one;
        the stage embedding of c is added everywhere, so the memory too knows the codebook."""
        codebook = lower_codes.size(2)
        device = memory.device
        x = torch.cat(
            [
                self.memory_projection(memory) + segment_positions(memory.size(1), self.d_model, device),
                self.code_embedding(lower_codes) + segment_positions(lower_codes.size(1), self.d_model, device),
            ],
            dim=1,
        ) + self.stage_embedding.weight[codebook - 1]
        valid = torch.cat([memory_valid, lengths_to_mask(lengths, lower_codes.size(1))], dim=1)
        hidden = self.encoder(x, src_key_padding_mask=~valid)
        return self.heads(hidden[:, memory.size(1):], codebook - 1)


def pad_to_width(tokens: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T, ...) -> (B, width, ...) with PAD_ID frames appended."""
    extra = width - tokens.size(1)
    if extra <= 0:
        return tokens
    return torch.cat([tokens, tokens.new_full((tokens.size(0), extra, *tokens.shape[2:]), PAD_ID)], dim=1)


class SlmSsModel(AbsESPnetModel):
    """SLM-SS as an ESPnet model: forward() is the training loss, generate() the separation.

    Token tensors are time-first (B, T, Q) as ESPnet's kaldi_ark collate gives them."""

    num_spk = 2

    def __init__(
        self,
        encoder: str = "conv",
        encoder_conf: Optional[dict] = None,
        num_codebooks: int = 8,
        codebook_size: int = 1024,
        d_model: int = 1024,
        nhead: int = 16,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 16,
        num_nar_layers: int = 12,
        dim_feedforward: int = 4096,
        dropout: float = 0.1,
        speaker_order: str = "pit",
    ):
        """encoder / encoder_conf: a MIXTURE_ENCODERS name and its options; speaker_order "pit":
        each example trains the serialization (which speaker first) with the lower AR loss,
        "given": spk1 first always."""
        super().__init__()
        if num_codebooks < 2:
            raise ValueError(f"SLM-SS needs at least 2 codebooks (codebook 0 AR, the rest NAR), got {num_codebooks}")
        if speaker_order not in SPEAKER_ORDERS:
            raise ValueError(f"unknown speaker_order {speaker_order!r}; choose from {SPEAKER_ORDERS}")
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.speaker_order = speaker_order
        self.encoder = build_mixture_encoder(encoder, encoder_conf or {})
        self.sample_rate = int(self.encoder.sample_rate)
        self.d_model = d_model
        self.encoder_projection = nn.Linear(self.encoder.output_dim, d_model)
        self.memory_encoder = bidirectional_encoder(d_model, nhead, dim_feedforward, dropout, num_encoder_layers)
        self.ar = SerializedTokenDecoder(codebook_size, d_model, nhead, num_decoder_layers, dim_feedforward, dropout)
        self.nar = MemoryNarPredictor(num_codebooks, codebook_size, d_model, nhead, num_nar_layers,
                                      dim_feedforward, dropout)

    # ----------------------------------------------------------------- inputs
    def encode(self, speech_mix: torch.Tensor, speech_mix_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N) mixtures -> memory (B, T_enc, d_model) and its (B, T_enc) validity."""
        if speech_mix.ndim != 2:
            raise ValueError(f"speech_mix: expected (B, N) single-channel mixtures, got {tuple(speech_mix.shape)}")
        features, frame_lengths = self.encoder(speech_mix, speech_mix_lengths)
        valid = lengths_to_mask(frame_lengths, features.size(1))
        x = self.encoder_projection(features) + segment_positions(features.size(1), self.d_model, features.device)
        return self.memory_encoder(x, src_key_padding_mask=~valid), valid

    def speaker_tokens(self, name: str, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The first num_codebooks codebooks of (B, T, Qc) tokens, checked (layers.check_codec_tokens)."""
        if tokens.ndim != 3 or tokens.size(2) < self.num_codebooks:
            raise ValueError(f"{name}: expected (B, T, Qc >= {self.num_codebooks}) tokens, got {tuple(tokens.shape)}")
        tokens = tokens[..., : self.num_codebooks]
        check_codec_tokens(name, tokens, self.num_codebooks, self.codebook_size)
        if int(lengths.max()) > tokens.size(1) or int(lengths.min()) < 1:
            raise ValueError(f"{name}: lengths {lengths.tolist()} outside 1..{tokens.size(1)} frames")
        valid = lengths_to_mask(lengths, tokens.size(1))
        if bool((tokens[valid] < 0).any()):
            raise ValueError(f"{name}: negative (padding) token inside its lengths {lengths.tolist()}")
        return tokens

    # ----------------------------------------------------------------- training
    def serialized_ar_losses(
        self,
        memory: torch.Tensor,
        memory_valid: torch.Tensor,
        first: torch.Tensor,
        first_lengths: torch.Tensor,
        second: torch.Tensor,
        second_lengths: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced CE of `<sos> first <sc> second <eos>` (codebook 0, (B, T)): per example
        (B,) mean loss, (B,) correct argmax count and (B,) scored token count."""
        sequences = self.ar.serialize(first, first_lengths, second, second_lengths)
        embedded = self.ar.embed(sequences.inputs, sequences.segments, sequences.positions)
        logits, _ = self.ar(embedded, self.ar.memory_keys_values(memory), memory_valid)
        scored = sequences.targets != IGNORE_ID
        token_losses = F.cross_entropy(logits.transpose(1, 2), sequences.targets, ignore_index=IGNORE_ID,
                                       reduction="none")
        counts = scored.sum(dim=1)
        correct = ((logits.argmax(dim=-1) == sequences.targets) & scored).sum(dim=1)
        return token_losses.sum(dim=1) / counts, correct, counts

    def ar_order_losses(
        self,
        memory: torch.Tensor,
        memory_valid: torch.Tensor,
        tokens1: torch.Tensor,
        lengths1: torch.Tensor,
        tokens2: torch.Tensor,
        lengths2: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 2) per-example AR losses of the serializations spk1-first (column 0) and spk2-first,
        with their (B, 2) correct and scored token counts; one decoder pass over 2B rows."""
        both = lambda a, b: torch.cat([pad_to_width(a, max(a.size(1), b.size(1))),
                                       pad_to_width(b, max(a.size(1), b.size(1)))])
        losses, correct, counts = self.serialized_ar_losses(
            memory.repeat(2, 1, 1), memory_valid.repeat(2, 1),
            both(tokens1, tokens2), torch.cat([lengths1, lengths2]),
            both(tokens2, tokens1), torch.cat([lengths2, lengths1]),
        )
        batch = memory.size(0)
        column = lambda x: x.view(2, batch).T
        return column(losses), column(correct), column(counts)

    def forward(
        self,
        speech_mix: torch.Tensor,
        speech_mix_lengths: torch.Tensor,
        ref_tokens1: torch.Tensor,
        ref_tokens1_lengths: torch.Tensor,
        ref_tokens2: torch.Tensor,
        ref_tokens2_lengths: torch.Tensor,
        utt_id: Optional[Sequence[str]] = None,  # ESPnet's trainer passes the batch keys
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """AR loss of the serialized codebook 0 (PIT over the speaker order, or spk1 first) plus
        the NAR loss of one random codebook 1..Q-1 of both speakers."""
        tokens1 = self.speaker_tokens("ref_tokens1", ref_tokens1, ref_tokens1_lengths)
        tokens2 = self.speaker_tokens("ref_tokens2", ref_tokens2, ref_tokens2_lengths)
        batch = speech_mix.size(0)
        memory, memory_valid = self.encode(speech_mix, speech_mix_lengths)

        if self.speaker_order == "pit":
            losses, correct, counts = self.ar_order_losses(
                memory, memory_valid, tokens1[..., 0], ref_tokens1_lengths, tokens2[..., 0], ref_tokens2_lengths
            )
            order = losses.argmin(dim=1, keepdim=True)  # ties: spk1 first
            losses, correct, counts = (x.gather(1, order)[:, 0] for x in (losses, correct, counts))
        else:
            losses, correct, counts = self.serialized_ar_losses(
                memory, memory_valid, tokens1[..., 0], ref_tokens1_lengths, tokens2[..., 0], ref_tokens2_lengths
            )
        ar_loss = losses.mean()
        ar_accuracy = correct.sum() / counts.sum()

        width = max(tokens1.size(1), tokens2.size(1))
        speakers = torch.cat([pad_to_width(tokens1, width), pad_to_width(tokens2, width)])
        speaker_lengths = torch.cat([ref_tokens1_lengths, ref_tokens2_lengths])
        codebook = int(torch.randint(1, self.num_codebooks, ()))
        nar_logits = self.nar(memory.repeat(2, 1, 1), memory_valid.repeat(2, 1), speakers[..., :codebook],
                              speaker_lengths)
        nar_targets = speakers[..., codebook].masked_fill(~lengths_to_mask(speaker_lengths, width), IGNORE_ID)
        nar_loss, nar_accuracy = cross_entropy_and_accuracy(nar_logits, nar_targets)

        return ar_nar_training_output(ar_loss, ar_accuracy, nar_loss, nar_accuracy, batch)

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """No features to normalize: the encoder reads waveforms."""
        return {}

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(
        self,
        speech_mix: torch.Tensor,
        speech_mix_lengths: torch.Tensor,
        num_frames: Sequence[int],
        options: SlmSsDecodeOptions = SlmSsDecodeOptions(),
    ) -> List[SlmSsOutput]:
        """Separate B mixtures: the AR writes codebook 0 of both speakers (sampled per options,
        greedy at temperature 0), then the NAR fills codebooks 1..Q-1 greedily, one batched pass
        per codebook for both speakers of every mixture.

        num_frames[b]: the codec frame count of mixture b, the base of its length cap. The AR
        never emits <eos> before <sc>, nor a second <sc>, nor either as a speaker's first token;
        speaker 1 reaching the cap gets <sc> forced (capped_no_sc), speaker 2 reaching it ends
        the decoding (capped_no_eos); either is logged as a warning. Call it in eval mode:
        dropout would differ between steps.
        """
        if len(num_frames) != speech_mix.size(0):
            raise ValueError(f"num_frames has {len(num_frames)} entries for {speech_mix.size(0)} mixtures")
        options.reseed()
        memory, memory_valid = self.encode(speech_mix, speech_mix_lengths)
        caps = torch.tensor([options.speaker_cap(int(n)) for n in num_frames], device=memory.device)
        first, second, statuses = self.generate_first_codebook(memory, memory_valid, caps, options)

        batch = memory.size(0)
        lengths = torch.tensor([len(codes) for codes in first + second], device=memory.device)
        width = max(1, int(lengths.max()))
        codes = torch.zeros(2 * batch, width, 1, dtype=torch.long, device=memory.device)
        for row, speaker_codes in enumerate(first + second):
            codes[row, : len(speaker_codes), 0] = speaker_codes
        both_memory, both_valid = memory.repeat(2, 1, 1), memory_valid.repeat(2, 1)
        for _ in range(1, self.num_codebooks):
            logits = self.nar(both_memory, both_valid, codes, lengths)
            codes = torch.cat([codes, logits.argmax(dim=-1, keepdim=True)], dim=2)

        outputs = []
        for b in range(batch):
            tokens = [codes[row, : int(lengths[row])].cpu() for row in (b, batch + b)]
            outputs.append(SlmSsOutput(tokens=tokens, status=statuses[b]))
            if statuses[b] != "ok":
                logger.warning("SLM-SS mixture %d of the batch: %s after %d + %d frames (cap %d per speaker)",
                               b, statuses[b], len(tokens[0]), len(tokens[1]), int(caps[b]))
        return outputs

    def generate_first_codebook(
        self, memory: torch.Tensor, memory_valid: torch.Tensor, caps: torch.Tensor, options: SlmSsDecodeOptions
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[str]]:
        """The AR stage: per mixture, codebook 0 of the first and the second speaker written
        ((T,) each, on the model's device) and the status."""
        batch, device = memory.size(0), memory.device
        ar = self.ar
        memory_kv = ar.memory_keys_values(memory)
        segment = torch.zeros(batch, dtype=torch.long, device=device)  # of the next input
        position = torch.zeros(batch, dtype=torch.long, device=device)
        token = torch.full((batch,), ar.sos_id, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        status = torch.zeros(batch, dtype=torch.long, device=device)  # index into STATUSES
        history: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # inputs for the uncached path
        emitted: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (code, segment, kept) per step
        caches = None
        for _ in range(int(2 * caps.max() + 2)):
            if options.use_cache:
                # The first step (no cache yet) is the full pass over one position.
                embedded = ar.embed(token[:, None], segment[:, None], position[:, None])
                logits, caches = ar(embedded, memory_kv, memory_valid, caches)
            else:
                history.append((token, segment, position))
                inputs, segments, positions = (torch.stack(x, dim=1) for x in zip(*history))
                logits, _ = ar(ar.embed(inputs, segments, positions), memory_kv, memory_valid)
            logits = logits[:, -1].float()
            in_first = segment == 0
            # <eos> before <sc> or as speaker 2's first token; <sc> as speaker 1's first token or twice.
            logits[:, ar.eos_id] = logits[:, ar.eos_id].masked_fill(in_first | (position == 0), float("-inf"))
            logits[:, ar.sc_id] = logits[:, ar.sc_id].masked_fill(~in_first | (position == 0), float("-inf"))
            token, _ = sample_tokens(logits, options)
            over_cap = (token < ar.sc_id) & (position >= caps) & ~finished
            # Speaker 1 at its cap: <sc> is forced, so speaker 2 still gets decoded (status
            # capped_no_sc); speaker 2 at its cap ends the decoding (capped_no_eos, unless already capped).
            forced_sc = over_cap & in_first
            token = torch.where(forced_sc, torch.full_like(token, ar.sc_id), token)
            status = torch.where(forced_sc, torch.ones_like(status), status)
            ended_at_cap = over_cap & ~in_first
            status = torch.where(ended_at_cap & (status == 0), torch.full_like(status, 2), status)
            kept = (token < ar.sc_id) & ~finished & ~ended_at_cap
            emitted.append((token, segment.clone(), kept))
            finished |= ended_at_cap | (token == ar.eos_id)
            if bool(finished.all()):
                break
            switched = token == ar.sc_id
            segment = torch.where(switched, torch.ones_like(segment), segment)
            position = torch.where(switched, torch.zeros_like(position), position + 1)
        tokens, segments, kept = (torch.stack(x, dim=1) for x in zip(*emitted))
        first = [tokens[b][kept[b] & (segments[b] == 0)] for b in range(batch)]
        second = [tokens[b][kept[b] & (segments[b] == 1)] for b in range(batch)]
        return first, second, [STATUSES[int(s)] for s in status.tolist()]
