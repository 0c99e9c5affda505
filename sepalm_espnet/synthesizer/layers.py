"""Pieces both codec language models (paper §3.4) share: their decoding options
(`SynthesisOptions`, so both generate() take the same ones), masks, positions, embeddings of
several codebooks, classifier-free guidance, sampling, the mask schedule and a decoder layer
with a key/value cache for autoregressive generation.

Conventions: token tensors are time-first like ESPnet batches, (B, T, Q) for codec tokens and
(B, L) for phonemes or semantic units; padded positions hold PAD_ID and every function that
needs to know which positions are real takes the lengths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# Collate pad value of every integer stream; negative, so a padded token used as an
# embedding index fails loudly instead of reading a real code.
PAD_ID = -1

KVCache = Tuple[torch.Tensor, torch.Tensor]
# How the AR+NAR synthesizer decides T'' (SynthesisOptions.length_policy).
LENGTH_POLICIES = ("cap", "exact")


@dataclass(frozen=True)
class SynthesisOptions:
    """Decoding options of both synthesizers' generate() (and of stage 11, Resynthesizer).

    Both models take every option; the help says which of them one of the two ignores.
    """

    temperature: float = field(default=1.0, metadata={"help": "sampling temperature; 0: greedy"})
    top_k: int = field(default=0, metadata={"help": "sample from the k most likely tokens only; 0: no top-k filter"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass; 1.0: no nucleus filter"})
    guidance_scale: Optional[float] = field(
        default=None,
        metadata={"help": "classifier-free guidance: mix with a condition-less pass; 1: off "
                          "(not given: the model's guidance_scale, from its training config)"},
    )
    steps: Optional[Tuple[int, ...]] = field(
        default=None,
        metadata={"help": "masked: decoding rounds per codebook, coarse to fine, the last for the rest "
                          "(not given: the model's inference_steps); AR+NAR: ignored"},
    )
    length_policy: str = field(
        default="cap",
        metadata={"help": "AR+NAR: 'cap': the end token stops the AR, at most ceil(max_length_ratio * T') frames; "
                          "'exact': exactly T' frames, the end token never sampled (s* covers ŝ frame for frame); "
                          "masked: ignored (T'' = T')"},
    )
    # 1.0 (measured, bench/syn_length_policy.py on the mini system): the aligner uses T' frames,
    # so frames past T' were decoded to be cut; 1.5 gave the same s* scores 9 % slower, `exact` 15 %
    # faster but 0.7 dB lower SI-SNRi.
    max_length_ratio: float = field(
        default=1.0, metadata={"help": "AR+NAR with length_policy cap: longest output T'' as a multiple of the input's T' "
                                       "(1: never longer than ŝ, what the aligner uses); masked: ignored (T'' = T')"}
    )
    use_cache: bool = field(
        default=True, metadata={"help": "AR+NAR: reuse attention keys/values across steps (off: a slow cross-check); masked: ignored"}
    )
    seed: Optional[int] = field(
        default=0,
        metadata={"help": "torch's seed, set at the start of each generate() call (one utterance in stage 11), so an "
                          "output depends neither on what ran before nor on the JOB split (None: not reset)"},
    )

    def __post_init__(self):
        if self.steps is not None:  # the command line gives a list; a tuple keeps the options immutable
            object.__setattr__(self, "steps", tuple(int(n) for n in self.steps))
        if self.length_policy not in LENGTH_POLICIES:
            raise ValueError(f"length_policy {self.length_policy!r}: choose from {LENGTH_POLICIES}")

    def guidance(self, model_scale: float) -> float:
        """The guidance scale in force: this option's, else the model's (its training config's)."""
        return model_scale if self.guidance_scale is None else self.guidance_scale

    def reseed(self) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed)


def lengths_to_mask(lengths: torch.Tensor, max_length: Optional[int] = None) -> torch.Tensor:
    """(B,) lengths -> (B, max_length) bool, True on real positions."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def sinusoidal_encoding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sine/cosine encodings of integer positions: (...,) -> (..., dim).

    Taking positions (not a length) lets a cached decoding step encode position t alone, and
    lets every segment of a concatenated sequence restart at 0.
    """
    half = dim // 2
    frequencies = torch.exp(
        torch.arange(half, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / half)
    )
    angles = positions.to(torch.float32)[..., None] * frequencies
    encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(encoding, (0, dim - 2 * half))


def segment_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim) encodings of positions 0 .. length-1."""
    return sinusoidal_encoding(torch.arange(length, device=device), dim)


class MultiCodebookEmbedding(nn.Module):
    """One table per codebook; a frame's embedding is the sum over the codebooks given.

    The tables live in one nn.Embedding at offsets codebook * entries_per_codebook, so any
    run of consecutive codebooks is summed in a single lookup.
    """

    def __init__(self, num_codebooks: int, entries_per_codebook: int, dim: int):
        super().__init__()
        self.num_codebooks = num_codebooks
        self.entries_per_codebook = entries_per_codebook
        self.dim = dim
        self.table = nn.Embedding(num_codebooks * entries_per_codebook, dim)

    def forward(self, tokens: torch.Tensor, first_codebook: int = 0) -> torch.Tensor:
        """(B, T, q) tokens of codebooks first_codebook .. first_codebook+q-1 -> (B, T, dim).

        q may be 0 (nothing to sum: zeros). Padded entries (negative) are read as entry 0;
        callers mask padded frames out of attention and losses.
        """
        batch, length, count = tokens.shape
        if first_codebook + count > self.num_codebooks:
            raise ValueError(f"codebooks {first_codebook}..{first_codebook + count - 1} of {self.num_codebooks}")
        if count == 0:
            return self.table.weight.new_zeros(batch, length, self.dim)
        offsets = (torch.arange(count, device=tokens.device) + first_codebook) * self.entries_per_codebook
        return self.table(tokens.clamp(min=0) + offsets).sum(dim=2)


class CodebookHeads(nn.Module):
    """One linear output layer per codebook, stored as one (num_codebooks, out, in) tensor.

    A training step uses one codebook's head; as slices of a single parameter the others get
    zero gradients instead of none, so DDP needs no unused-parameter search.
    """

    def __init__(self, num_codebooks: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(num_codebooks, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_codebooks, out_features).uniform_(-bound, bound))

    def forward(self, hidden: torch.Tensor, codebook: int) -> torch.Tensor:
        return F.linear(hidden, self.weight[codebook], self.bias[codebook])


def null_condition(
    ids: torch.Tensor, lengths: torch.Tensor, drop: torch.Tensor, null_id: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace the (B, L) condition sequences where `drop` is True by the one-token [null_id].

    The unconditional branch of classifier-free guidance: training drops conditions with a
    probability, inference runs the dropped copy next to the conditioned one. Empty
    sequences become [null_id] too (an empty transcript is no condition), so no sequence
    has zero keys to attend to.
    """
    drop = drop | (lengths == 0)
    if ids.size(1) == 0:
        ids = ids.new_full((ids.size(0), 1), PAD_ID)
    ids = ids.clone()
    ids[drop, 0] = null_id
    return ids, torch.where(drop, torch.ones_like(lengths), lengths)


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho and Salimans, 2022): scale 1 is the conditional model."""
    return uncond + scale * (cond - uncond)


def check_guidance(scale: float, cond_drop_prob: float) -> float:
    """A model's default guidance scale: guidance needs the condition-less pass that only
    training with condition dropout teaches."""
    scale = float(scale)
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"guidance_scale must be a finite number >= 0, got {scale}")
    if scale != 1.0 and cond_drop_prob <= 0:
        raise ValueError(f"guidance_scale {scale} needs cond_drop_prob > 0 in training (got {cond_drop_prob}): "
                         "the condition-less pass would be untrained")
    return scale


def cosine_schedule(progress: torch.Tensor) -> torch.Tensor:
    """Fraction of positions still masked after `progress` in [0, 1] of the decoding.

    cos(pi/2 * u), written as sin(pi/2 * (1 - u)) so that u = 1 gives exactly 0 (decoding
    ends with nothing masked) and u = 0 exactly 1.
    """
    return torch.sin((1.0 - progress) * (math.pi / 2))


def filter_top_k_top_p(
    logits: torch.Tensor, top_k: int = SynthesisOptions.top_k, top_p: float = SynthesisOptions.top_p
) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to -inf (last dim).

    top_k 0 and top_p 1.0 disable the filters; the most likely token always survives.
    """
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the more likely tokens before it already hold top_p of the mass.
        outside = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p
        logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    return logits


def sample_tokens(logits: torch.Tensor, options: SynthesisOptions) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of (..., V) logits; returns (tokens, their probabilities).

    Temperature 0 is greedy (argmax). The probabilities are those of the distribution drawn
    from (after temperature and filtering); masked decoding ranks its confidence by them.
    """
    if options.temperature == 0:
        probs = logits.float().softmax(dim=-1)
        tokens = probs.argmax(dim=-1)
    else:
        filtered = filter_top_k_top_p(logits.float() / options.temperature, options.top_k, options.top_p)
        probs = filtered.softmax(dim=-1)
        tokens = torch.multinomial(probs.reshape(-1, probs.size(-1)), 1).reshape(probs.shape[:-1])
    return tokens, probs.gather(-1, tokens[..., None]).squeeze(-1)


class CachedDecoderLayer(nn.Module):
    """Pre-norm transformer layer whose self-attention can extend a key/value cache.

    Training and full recomputation pass the whole sequence with its (B, 1, S, S) mask; a
    generation step passes the new positions only, with the cache of everything before and a
    (B, 1, new, cached + new) mask, and gets the same outputs as the full pass would give.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not a multiple of nhead {nhead}")
        self.nhead = nhead
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attention_out = nn.Linear(d_model, d_model)
        self.feedforward_norm = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, attention_mask: torch.Tensor, cache: Optional[KVCache] = None
    ) -> Tuple[torch.Tensor, KVCache]:
        """x (B, S_new, d), attention_mask bool (B, 1, S_new, S_cached + S_new), True = attend."""
        batch, new_length, d_model = x.shape
        heads = self.qkv(self.attention_norm(x)).view(batch, new_length, 3, self.nhead, d_model // self.nhead)
        query, key, value = heads.permute(2, 0, 3, 1, 4)  # each (B, H, S_new, d_head)
        if cache is not None:
            key = torch.cat([cache[0], key], dim=2)
            value = torch.cat([cache[1], value], dim=2)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch, new_length, d_model)
        x = x + self.residual_dropout(self.attention_out(attended))
        x = x + self.residual_dropout(self.feedforward(self.feedforward_norm(x)))
        return x, (key, value)


def bidirectional_encoder(
    d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int
) -> nn.TransformerEncoder:
    """A pre-norm torch TransformerEncoder (batch first) with a final LayerNorm."""
    layer = nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)


def check_codec_tokens(name: str, tokens: torch.Tensor, num_codebooks: int, codebook_size: int) -> None:
    """Tokens of another codec would silently read other codebooks' embedding rows."""
    if tokens.ndim != 3 or tokens.size(2) != num_codebooks:
        raise ValueError(f"{name}: expected (B, T, {num_codebooks}) tokens, got {tuple(tokens.shape)}")
    if tokens.numel() and int(tokens.max()) >= codebook_size:
        raise ValueError(f"{name}: token {int(tokens.max())} is outside the codebook of {codebook_size}")
