"""Masked non-autoregressive codec language model (MaskGCT/SoundStorm style): paper §3.4, eq. 8.

    P_Mask(S_:,i | S_m,i, S_:,<i, Ŝ, P)

One bidirectional transformer predicts codebook i of the refined speech S for all T' frames
at once from, summed per frame: the condition, all Q codebooks of the separated estimate Ŝ,
the codebooks of S below i, codebook i with some positions replaced by [MASK], and an
embedding of i. The output covers exactly the frames of Ŝ (T'' = T').

Condition (`condition`):
- "semantic" (the paper): semantic tokens P from a text-to-semantic model, stretched
  (nearest neighbour) to T' frames and added to the frame embeddings;
- "phoneme": the phoneme sequence through a small transformer encoder, read by
  cross-attention in every layer (TransformerDecoder layers without a causal mask).

Training picks one codebook per batch and masks a cosine-schedule fraction cos(pi/2 * u),
u ~ U(0, 1), of its frames; the loss is cross-entropy on the masked frames. Inference decodes
codebook after codebook; within one it starts all-masked and runs `steps` rounds of predict,
sample, keep the most confident, re-mask the rest so that floor(T' * cos(pi/2 * k / steps))
frames stay masked after round k (none after the last). Conditions are dropped with
probability cond_drop_prob in training for classifier-free guidance at inference.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

from sepalm_espnet.synthesizer.layers import (
    PAD_ID,
    CodebookHeads,
    MultiCodebookEmbedding,
    SynthesisOptions,
    bidirectional_encoder,
    cfg_logits,
    check_codec_tokens,
    check_guidance,
    cosine_schedule,
    lengths_to_mask,
    null_condition,
    sample_tokens,
    segment_positions,
)

# condition -> the ESPnet data name that carries it
CONDITION_DATA = {"semantic": "semantic", "phoneme": "phonemes"}


def stretch_to_length(
    ids: torch.Tensor, lengths: torch.Tensor, target_lengths: torch.Tensor, num_frames: int
) -> torch.Tensor:
    """(B, L) sequences of the given lengths -> (B, num_frames), nearest neighbour.

    Frame t of a target of length T reads source position floor(t * L / T); lengths >= 1.
    """
    frames = torch.arange(num_frames, device=ids.device)[None, :]
    source = (frames * lengths[:, None]) // target_lengths[:, None].clamp(min=1)
    return ids.gather(1, source.clamp(max=ids.size(1) - 1))


class SemanticSumBackbone(nn.Module):
    """Condition = semantic tokens added frame by frame; a bidirectional encoder over frames."""

    def __init__(
        self, vocab_size: int, d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float
    ):
        super().__init__()
        self.null_id = vocab_size
        self.embedding = nn.Embedding(vocab_size + 1, d_model)  # + null condition
        self.encoder = bidirectional_encoder(d_model, nhead, dim_feedforward, dropout, num_layers)

    def forward(
        self,
        frames: torch.Tensor,
        frame_lengths: torch.Tensor,
        ids: torch.Tensor,
        lengths: torch.Tensor,
        drop: torch.Tensor,
    ) -> torch.Tensor:
        ids, lengths = null_condition(ids, lengths, drop, self.null_id)
        stretched = stretch_to_length(ids, lengths, frame_lengths, frames.size(1))
        condition = self.embedding(stretched.clamp(min=0))
        return self.encoder(frames + condition, src_key_padding_mask=~lengths_to_mask(frame_lengths, frames.size(1)))


class PhonemeCrossAttentionBackbone(nn.Module):
    """Condition = encoded phonemes, attended to from every layer (memory of a TransformerDecoder)."""

    def __init__(
        self, vocab_size: int, d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float,
        num_encoder_layers: int,
    ):
        super().__init__()
        self.null_id = vocab_size
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size + 1, d_model)  # + null condition
        self.phoneme_encoder = bidirectional_encoder(d_model, nhead, dim_feedforward, dropout, num_encoder_layers)
        layer = nn.TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))

    def forward(
        self,
        frames: torch.Tensor,
        frame_lengths: torch.Tensor,
        ids: torch.Tensor,
        lengths: torch.Tensor,
        drop: torch.Tensor,
    ) -> torch.Tensor:
        ids, lengths = null_condition(ids, lengths, drop, self.null_id)
        memory_padding = ~lengths_to_mask(lengths, ids.size(1))
        phonemes = self.embedding(ids.clamp(min=0)) + segment_positions(ids.size(1), self.d_model, ids.device)
        memory = self.phoneme_encoder(phonemes, src_key_padding_mask=memory_padding)
        return self.decoder(
            frames,
            memory,
            tgt_key_padding_mask=~lengths_to_mask(frame_lengths, frames.size(1)),
            memory_key_padding_mask=memory_padding,
        )


class DecodingStep(NamedTuple):
    """State after one round of iterative decoding (for progress logs and tests)."""

    codebook: int  # 0-based
    step: int  # 1 .. steps of this codebook
    tokens: torch.Tensor  # (B, T) this codebook, mask id where still masked
    masked: torch.Tensor  # (B, T) bool, True on frames still masked


class MaskedSynthesizer(AbsESPnetModel):
    """Eq. 8 as an ESPnet model: forward() is the masked-token training loss, generate() the
    iterative parallel synthesis. Token tensors are time-first (B, T, Q)."""

    def __init__(
        self,
        num_codebooks: int = 12,
        codebook_size: int = 1024,
        d_model: int = 1024,
        nhead: int = 16,
        num_layers: int = 12,
        dim_feedforward: int = 4096,
        dropout: float = 0.1,
        condition: str = "semantic",
        semantic_vocab_size: Optional[int] = None,
        phoneme_vocab_size: Optional[int] = None,
        phoneme_encoder_layers: int = 4,
        cond_drop_prob: float = 0.1,
        inference_steps: Sequence[int] = (25, 10, 1),
        guidance_scale: float = 1.0,
    ):
        """inference_steps: decoding rounds per codebook, coarse to fine; the last entry also
        covers the codebooks after it. guidance_scale: inference's default classifier-free
        guidance (1: off). phoneme_vocab_size comes from the task's --token_list."""
        super().__init__()
        if condition == "semantic":
            if semantic_vocab_size is None:
                raise ValueError("condition 'semantic' needs semantic_vocab_size (the text-to-semantic units)")
            self.backbone = SemanticSumBackbone(
                semantic_vocab_size, d_model, nhead, num_layers, dim_feedforward, dropout
            )
        elif condition == "phoneme":
            if phoneme_vocab_size is None:
                raise ValueError("condition 'phoneme' needs a phoneme token list (the task's --token_list)")
            self.backbone = PhonemeCrossAttentionBackbone(
                phoneme_vocab_size, d_model, nhead, num_layers, dim_feedforward, dropout, phoneme_encoder_layers
            )
        else:
            raise ValueError(f"condition must be one of {list(CONDITION_DATA)}, got '{condition}'")
        self.check_steps(inference_steps)
        self.condition = condition
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.mask_id = codebook_size
        self.d_model = d_model
        self.cond_drop_prob = cond_drop_prob
        self.inference_steps = list(inference_steps)
        self.guidance_scale = check_guidance(guidance_scale, cond_drop_prob)
        self.est_embedding = MultiCodebookEmbedding(num_codebooks, codebook_size, d_model)
        self.target_embedding = MultiCodebookEmbedding(num_codebooks, codebook_size + 1, d_model)  # + [MASK]
        self.codebook_embedding = nn.Embedding(num_codebooks, d_model)
        self.heads = CodebookHeads(num_codebooks, d_model, codebook_size)

    @staticmethod
    def check_steps(steps: Sequence[int]) -> None:
        if not steps or any(int(n) < 1 for n in steps):
            raise ValueError(f"inference_steps must be a non-empty list of positive counts, got {list(steps)}")

    def check_codebooks(self, name: str, tokens: torch.Tensor) -> None:
        check_codec_tokens(name, tokens, self.num_codebooks, self.codebook_size)

    def select_condition(
        self,
        phonemes: Optional[torch.Tensor],
        phonemes_lengths: Optional[torch.Tensor],
        semantic: Optional[torch.Tensor],
        semantic_lengths: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        ids, lengths = (semantic, semantic_lengths) if self.condition == "semantic" else (phonemes, phonemes_lengths)
        if ids is None or lengths is None:
            raise ValueError(f"condition '{self.condition}' needs the '{CONDITION_DATA[self.condition]}' data")
        return ids, lengths

    def codebook_logits(
        self,
        est_tokens: torch.Tensor,
        lengths: torch.Tensor,
        target_tokens: torch.Tensor,
        condition_ids: torch.Tensor,
        condition_lengths: torch.Tensor,
        drop: torch.Tensor,
    ) -> torch.Tensor:
        """target_tokens (B, T, i+1): codebooks < i of S and codebook i (partly [MASK]) ->
        (B, T, codebook_size) logits of codebook i."""
        codebook = target_tokens.size(2) - 1
        frames = (
            self.est_embedding(est_tokens)
            + self.target_embedding(target_tokens)
            + self.codebook_embedding.weight[codebook]
            + segment_positions(est_tokens.size(1), self.d_model, est_tokens.device)
        )
        hidden = self.backbone(frames, lengths, condition_ids, condition_lengths, drop)
        return self.heads(hidden, codebook)

    def forward(
        self,
        est_tokens: torch.Tensor,
        est_tokens_lengths: torch.Tensor,
        ref_tokens: torch.Tensor,
        ref_tokens_lengths: torch.Tensor,
        phonemes: Optional[torch.Tensor] = None,
        phonemes_lengths: Optional[torch.Tensor] = None,
        semantic: Optional[torch.Tensor] = None,
        semantic_lengths: Optional[torch.Tensor] = None,
        utt_id: Optional[Sequence[str]] = None,  # ESPnet's trainer passes the batch keys
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """CE on the masked frames of one random codebook (the same for the whole batch)."""
        self.check_codebooks("est_tokens", est_tokens)
        self.check_codebooks("ref_tokens", ref_tokens)
        if not torch.equal(est_tokens_lengths, ref_tokens_lengths):
            raise ValueError(
                "est_tokens and ref_tokens must have the same number of frames per utterance "
                f"(the masked model keeps T'): {est_tokens_lengths.tolist()} vs {ref_tokens_lengths.tolist()}"
            )
        condition_ids, condition_lengths = self.select_condition(phonemes, phonemes_lengths, semantic, semantic_lengths)
        batch, length = ref_tokens.shape[:2]
        device = ref_tokens.device
        lengths = ref_tokens_lengths
        valid = lengths_to_mask(lengths, length)
        drop = torch.rand(batch, device=device) < (self.cond_drop_prob if self.training else 0.0)

        codebook = int(torch.randint(0, self.num_codebooks, ()))
        fraction = cosine_schedule(torch.rand(batch, device=device))
        num_masked = torch.ceil(lengths * fraction).long().clamp(min=1)  # u < 1: at least one frame
        order = torch.rand(batch, length, device=device).masked_fill(~valid, float("inf")).argsort(dim=1)
        masked_in_order = torch.arange(length, device=device).expand(batch, -1) < num_masked[:, None]
        masked = torch.zeros_like(valid).scatter(1, order, masked_in_order)
        current = ref_tokens[..., codebook].masked_fill(masked, self.mask_id)
        target_tokens = torch.cat([ref_tokens[..., :codebook], current[..., None]], dim=2)

        logits = self.codebook_logits(est_tokens, lengths, target_tokens, condition_ids, condition_lengths, drop)
        loss = F.cross_entropy(logits[masked], ref_tokens[..., codebook][masked])
        accuracy = (logits[masked].argmax(dim=-1) == ref_tokens[..., codebook][masked]).float().mean()
        stats = dict(loss=loss.detach(), acc=accuracy.detach(), masked_fraction=masked.sum() / valid.sum())
        return force_gatherable((loss, stats, torch.tensor(batch)), loss.device)

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """No features to normalize: the inputs are token ids."""
        return {}

    def steps_for(self, codebook: int, steps: List[int]) -> int:
        return int(steps[min(codebook, len(steps) - 1)])

    @torch.no_grad()
    def decoding_steps(
        self,
        est_tokens: torch.Tensor,
        est_tokens_lengths: torch.Tensor,
        phonemes: Optional[torch.Tensor] = None,
        phonemes_lengths: Optional[torch.Tensor] = None,
        semantic: Optional[torch.Tensor] = None,
        semantic_lengths: Optional[torch.Tensor] = None,
        options: SynthesisOptions = SynthesisOptions(),
    ) -> Iterator[DecodingStep]:
        """Yield the state after every decoding round, codebook by codebook; see generate()."""
        self.check_codebooks("est_tokens", est_tokens)
        options.reseed()
        steps = self.inference_steps if options.steps is None else list(options.steps)
        self.check_steps(steps)
        condition_ids, condition_lengths = self.select_condition(phonemes, phonemes_lengths, semantic, semantic_lengths)
        batch, length = est_tokens.shape[:2]
        lengths = est_tokens_lengths
        valid = lengths_to_mask(lengths, length)
        scale = options.guidance(self.guidance_scale)
        guided = scale != 1.0
        drop = torch.zeros(batch, dtype=torch.bool, device=est_tokens.device)
        if guided:  # rows B..2B-1: the same utterances without the condition
            est_tokens, lengths = est_tokens.repeat(2, 1, 1), lengths.repeat(2)
            condition_ids, condition_lengths = condition_ids.repeat(2, 1), condition_lengths.repeat(2)
            drop = torch.cat([drop, ~drop])

        codes = est_tokens.new_full((batch, length, 0), PAD_ID)
        for codebook in range(self.num_codebooks):
            current = est_tokens.new_full((batch, length), self.mask_id)
            masked = valid.clone()
            num_steps = self.steps_for(codebook, steps)
            for step in range(1, num_steps + 1):
                target_tokens = torch.cat([codes, current[..., None]], dim=2)
                if guided:
                    target_tokens = target_tokens.repeat(2, 1, 1)
                logits = self.codebook_logits(
                    est_tokens, lengths, target_tokens, condition_ids, condition_lengths, drop
                )
                if guided:
                    logits = cfg_logits(logits[:batch], logits[batch:], scale)
                sampled, probabilities = sample_tokens(logits, options)
                proposal = torch.where(masked, sampled, current)
                # Frames already decided (and padding) rank last, so only masked ones are re-masked.
                confidence = probabilities.masked_fill(~masked, float("inf"))
                fraction = cosine_schedule(torch.tensor(step / num_steps, dtype=torch.float64))
                still_masked = torch.floor(lengths[:batch] * fraction).long()
                rank = confidence.argsort(dim=1).argsort(dim=1)
                masked = rank < still_masked[:, None]
                current = proposal.masked_fill(masked, self.mask_id)
                yield DecodingStep(codebook, step, current, masked)
            codes = torch.cat([codes, current[..., None]], dim=2)

    def generate(
        self,
        est_tokens: torch.Tensor,
        est_tokens_lengths: torch.Tensor,
        phonemes: Optional[torch.Tensor] = None,
        phonemes_lengths: Optional[torch.Tensor] = None,
        semantic: Optional[torch.Tensor] = None,
        semantic_lengths: Optional[torch.Tensor] = None,
        options: SynthesisOptions = SynthesisOptions(),
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Synthesize S: (B, T', Q) tokens (PAD_ID after each length) and the (B,) lengths T'.

        The signature is ArNarSynthesizer.generate's; the condition data (`condition`) is
        read, the other ignored. options.steps: rounds per codebook (default: the model's
        inference_steps); temperature 0 is greedy; a guidance scale != 1 (options', else the
        model's guidance_scale) adds a condition-less
        pass and mixes the logits; max_length_ratio and use_cache do not apply (T'' = T').
        Call it in eval mode (dropout off).
        """
        final_tokens: Dict[int, torch.Tensor] = {}
        for state in self.decoding_steps(
            est_tokens, est_tokens_lengths, phonemes, phonemes_lengths, semantic, semantic_lengths, options
        ):
            final_tokens[state.codebook] = state.tokens
        codes = torch.stack([final_tokens[codebook] for codebook in range(self.num_codebooks)], dim=2)
        padding = ~lengths_to_mask(est_tokens_lengths, codes.size(1))
        return codes.masked_fill(padding[..., None], PAD_ID), est_tokens_lengths
