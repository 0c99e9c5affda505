"""AR+NAR codec language model (VALL-E style): paper §3.4, eq. 7.

    P(S | Ŝ, p) = prod_t P_AR(S_t,1 | S_<t,1, Ŝ_:,1, p) * prod_{i=2..Q} P_NAR(S_:,i | S_:,<i, Ŝ, p)

The AR decoder writes codebook 1 of the refined speech S frame by frame after the prefix
[phonemes p ; codebook 1 of the separated estimate Ŝ] and ends it with an end token, so the
AR stage decides the output length T'' (capped at max_length_ratio * T' at inference; Ŝ and
S cover the same audio, so T'' = T' is what training teaches). The NAR transformer then fills
codebooks 2..Q of all T'' frames, one codebook per pass, from the prefix [p ; all Q codebooks
of Ŝ summed] and the codebooks of S already known.

Each stream has its own embedding table and positions restart at 0 in every segment; the AR
prefix attends bidirectionally within itself (a prefix LM), the target causally. Training
drops the phonemes with probability cond_drop_prob (classifier-free guidance); AR inference
mixes conditioned and phoneme-less logits with a guidance scale.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

from sepalm_espnet.synthesizer.layers import (
    PAD_ID,
    CachedDecoderLayer,
    CodebookHeads,
    KVCache,
    MultiCodebookEmbedding,
    SynthesisOptions,
    bidirectional_encoder,
    cfg_logits,
    check_codec_tokens,
    check_guidance,
    lengths_to_mask,
    null_condition,
    sample_tokens,
    segment_positions,
    sinusoidal_encoding,
)

IGNORE_ID = -100  # F.cross_entropy's ignore_index


def prefix_lm_mask(prefix_valid: torch.Tensor, target_valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) attention mask over [prefix ; target]: prefix sees the prefix, target
    positions see the prefix and the target up to themselves; padded keys are hidden."""
    prefix_length, target_length = prefix_valid.size(1), target_valid.size(1)
    total = prefix_length + target_length
    structure = torch.zeros(total, total, dtype=torch.bool, device=prefix_valid.device)
    structure[:, :prefix_length] = True
    structure[prefix_length:, prefix_length:] = torch.ones(
        target_length, target_length, dtype=torch.bool, device=prefix_valid.device
    ).tril()
    key_valid = torch.cat([prefix_valid, target_valid], dim=1)
    return (structure[None] & key_valid[:, None, :])[:, None]


def cross_entropy_and_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean CE and accuracy of (B, T, V) logits over the targets that are not IGNORE_ID."""
    loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_ID)
    scored = targets != IGNORE_ID
    accuracy = (logits.argmax(dim=-1)[scored] == targets[scored]).float().mean()
    return loss, accuracy


def ar_nar_training_output(
    ar_loss: torch.Tensor, ar_accuracy: torch.Tensor, nar_loss: torch.Tensor, nar_accuracy: torch.Tensor, batch: int
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
    """(loss, stats, weight) of an AR + NAR codec LM's training step, as ESPnet's trainer takes them
    (this synthesizer's and SLM-SS's)."""
    loss = ar_loss + nar_loss
    stats = dict(loss=loss.detach(), ar_loss=ar_loss.detach(), ar_acc=ar_accuracy.detach(),
                 nar_loss=nar_loss.detach(), nar_acc=nar_accuracy.detach())
    return force_gatherable((loss, stats, torch.tensor(batch)), loss.device)


class ArCodebookDecoder(nn.Module):
    """Decoder-only LM of codebook 1; ids codebook_size (end) and codebook_size + 1 (start)."""

    def __init__(
        self, phoneme_vocab_size: int, codebook_size: int, d_model: int, nhead: int,
        num_layers: int, dim_feedforward: int, dropout: float,
    ):
        super().__init__()
        self.d_model = d_model
        self.end_id = codebook_size
        self.start_id = codebook_size + 1
        self.phoneme_embedding = nn.Embedding(phoneme_vocab_size + 1, d_model)  # + null condition
        self.est_embedding = nn.Embedding(codebook_size, d_model)
        self.target_embedding = nn.Embedding(codebook_size + 2, d_model)
        self.layers = nn.ModuleList(
            CachedDecoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, codebook_size + 1)

    def embed_prefix(
        self, phonemes: torch.Tensor, phoneme_lengths: torch.Tensor, est_codes: torch.Tensor, est_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, L) phonemes and (B, T') codebook 1 of Ŝ -> prefix (B, L + T', d) and its validity."""
        device = phonemes.device
        phoneme_part = self.phoneme_embedding(phonemes.clamp(min=0))
        est_part = self.est_embedding(est_codes.clamp(min=0))
        prefix = torch.cat(
            [
                phoneme_part + segment_positions(phonemes.size(1), self.d_model, device),
                est_part + segment_positions(est_codes.size(1), self.d_model, device),
            ],
            dim=1,
        )
        valid = torch.cat(
            [lengths_to_mask(phoneme_lengths, phonemes.size(1)), lengths_to_mask(est_lengths, est_codes.size(1))], dim=1
        )
        return prefix, valid

    def embed_targets(self, tokens: torch.Tensor, first_position: int = 0) -> torch.Tensor:
        positions = torch.arange(first_position, first_position + tokens.size(1), device=tokens.device)
        return self.target_embedding(tokens) + sinusoidal_encoding(positions, self.d_model)

    def full_logits(
        self, prefix: torch.Tensor, prefix_valid: torch.Tensor, targets: torch.Tensor, target_valid: torch.Tensor
    ) -> torch.Tensor:
        """Logits (B, T, V) at every target position, computed over the whole sequence."""
        mask = prefix_lm_mask(prefix_valid, target_valid)
        x = torch.cat([prefix, targets], dim=1)
        for layer in self.layers:
            x, _ = layer(x, mask)
        return self.head(self.final_norm(x[:, prefix.size(1):]))

    def prefill(self, prefix: torch.Tensor, prefix_valid: torch.Tensor) -> List[KVCache]:
        """Run the prefix once; its keys/values are all later steps need of it."""
        mask = prefix_valid[:, None, None, :]
        caches = []
        x = prefix
        for layer in self.layers:
            x, cache = layer(x, mask)
            caches.append(cache)
        return caches

    def step(
        self, new_target: torch.Tensor, prefix_valid: torch.Tensor, caches: List[KVCache]
    ) -> Tuple[torch.Tensor, List[KVCache]]:
        """One embedded target position (B, 1, d) after the cached ones -> logits (B, V)."""
        cached_length = caches[0][0].size(2)
        target_keys = prefix_valid.new_ones(prefix_valid.size(0), cached_length + 1 - prefix_valid.size(1))
        mask = torch.cat([prefix_valid, target_keys], dim=1)[:, None, None, :]
        x = new_target
        new_caches = []
        for layer, cache in zip(self.layers, caches):
            x, cache = layer(x, mask, cache)
            new_caches.append(cache)
        return self.head(self.final_norm(x[:, -1])), new_caches


class NarCodebookPredictor(nn.Module):
    """Bidirectional transformer predicting codebook c (1 .. Q-1, 0-based) of every frame."""

    def __init__(
        self, phoneme_vocab_size: int, num_codebooks: int, codebook_size: int, d_model: int, nhead: int,
        num_layers: int, dim_feedforward: int, dropout: float,
    ):
        super().__init__()
        self.d_model = d_model
        self.phoneme_embedding = nn.Embedding(phoneme_vocab_size + 1, d_model)  # + null condition
        self.est_embedding = MultiCodebookEmbedding(num_codebooks, codebook_size, d_model)
        # Inputs are codebooks 0 .. Q-2 of S; outputs codebooks 1 .. Q-1, one head and stage each.
        self.target_embedding = MultiCodebookEmbedding(num_codebooks - 1, codebook_size, d_model)
        self.stage_embedding = nn.Embedding(num_codebooks - 1, d_model)
        self.encoder = bidirectional_encoder(d_model, nhead, dim_feedforward, dropout, num_layers)
        self.heads = CodebookHeads(num_codebooks - 1, d_model, codebook_size)

    def forward(
        self,
        phonemes: torch.Tensor,
        phoneme_lengths: torch.Tensor,
        est_tokens: torch.Tensor,
        est_lengths: torch.Tensor,
        lower_codes: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """lower_codes (B, T, c): codebooks 0 .. c-1 of S -> logits (B, T, codebook_size) of codebook c.

        The stage embedding of c is added at every position, so the prefix too knows which
        codebook is being predicted.
        """
        codebook = lower_codes.size(2)
        device = phonemes.device
        segments = [
            self.phoneme_embedding(phonemes.clamp(min=0)) + segment_positions(phonemes.size(1), self.d_model, device),
            self.est_embedding(est_tokens) + segment_positions(est_tokens.size(1), self.d_model, device),
            self.target_embedding(lower_codes) + segment_positions(lower_codes.size(1), self.d_model, device),
        ]
        valid = torch.cat(
            [
                lengths_to_mask(phoneme_lengths, phonemes.size(1)),
                lengths_to_mask(est_lengths, est_tokens.size(1)),
                lengths_to_mask(target_lengths, lower_codes.size(1)),
            ],
            dim=1,
        )
        x = torch.cat(segments, dim=1) + self.stage_embedding.weight[codebook - 1]
        hidden = self.encoder(x, src_key_padding_mask=~valid)
        return self.heads(hidden[:, -lower_codes.size(1):], codebook - 1)


class ArNarSynthesizer(AbsESPnetModel):
    """Eq. 7 as an ESPnet model: forward() is the teacher-forced training loss, generate()
    the synthesis. Token tensors are time-first (B, T, Q), as ESPnet's kaldi_ark data gives."""

    condition = "phoneme"  # the data generate() needs, named as MaskedSynthesizer.condition

    def __init__(
        self,
        phoneme_vocab_size: int,
        num_codebooks: int = 12,
        codebook_size: int = 1024,
        d_model: int = 1024,
        nhead: int = 16,
        num_layers: int = 12,
        dim_feedforward: int = 4096,
        dropout: float = 0.1,
        cond_drop_prob: float = 0.1,
        guidance_scale: float = 1.0,
    ):
        """guidance_scale: inference's default classifier-free guidance (1: off); a model trained
        with cond_drop_prob > 0 learnt the phoneme-less pass it needs."""
        super().__init__()
        if num_codebooks < 2:
            raise ValueError("AR+NAR needs at least 2 codebooks (codebook 1 AR, the rest NAR)")
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.null_phoneme_id = phoneme_vocab_size
        self.cond_drop_prob = cond_drop_prob
        self.guidance_scale = check_guidance(guidance_scale, cond_drop_prob)
        self.ar = ArCodebookDecoder(
            phoneme_vocab_size, codebook_size, d_model, nhead, num_layers, dim_feedforward, dropout
        )
        self.nar = NarCodebookPredictor(
            phoneme_vocab_size, num_codebooks, codebook_size, d_model, nhead, num_layers, dim_feedforward, dropout
        )

    def check_codebooks(self, name: str, tokens: torch.Tensor) -> None:
        check_codec_tokens(name, tokens, self.num_codebooks, self.codebook_size)

    def forward(
        self,
        est_tokens: torch.Tensor,
        est_tokens_lengths: torch.Tensor,
        ref_tokens: torch.Tensor,
        ref_tokens_lengths: torch.Tensor,
        phonemes: torch.Tensor,
        phonemes_lengths: torch.Tensor,
        utt_id: Optional[Sequence[str]] = None,  # ESPnet's trainer passes the batch keys
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """AR loss on codebook 1 (+ end token) plus NAR loss on one random codebook 2..Q."""
        self.check_codebooks("est_tokens", est_tokens)
        self.check_codebooks("ref_tokens", ref_tokens)
        batch = est_tokens.size(0)
        drop = torch.rand(batch, device=est_tokens.device) < (self.cond_drop_prob if self.training else 0.0)
        phonemes, phonemes_lengths = null_condition(phonemes, phonemes_lengths, drop, self.null_phoneme_id)
        ref_valid = lengths_to_mask(ref_tokens_lengths, ref_tokens.size(1))

        prefix, prefix_valid = self.ar.embed_prefix(phonemes, phonemes_lengths, est_tokens[..., 0], est_tokens_lengths)
        first_codes = ref_tokens[..., 0].clamp(min=0)
        start = first_codes.new_full((batch, 1), self.ar.start_id)
        ar_inputs = self.ar.embed_targets(torch.cat([start, first_codes], dim=1))
        ar_input_valid = lengths_to_mask(ref_tokens_lengths + 1, ar_inputs.size(1))
        ar_logits = self.ar.full_logits(prefix, prefix_valid, ar_inputs, ar_input_valid)
        ar_targets = F.pad(first_codes.masked_fill(~ref_valid, IGNORE_ID), (0, 1), value=IGNORE_ID)
        ar_targets[torch.arange(batch, device=ar_targets.device), ref_tokens_lengths] = self.ar.end_id
        ar_loss, ar_accuracy = cross_entropy_and_accuracy(ar_logits, ar_targets)

        codebook = int(torch.randint(1, self.num_codebooks, ()))
        nar_logits = self.nar(
            phonemes, phonemes_lengths, est_tokens, est_tokens_lengths, ref_tokens[..., :codebook], ref_tokens_lengths
        )
        nar_targets = ref_tokens[..., codebook].masked_fill(~ref_valid, IGNORE_ID)
        nar_loss, nar_accuracy = cross_entropy_and_accuracy(nar_logits, nar_targets)

        return ar_nar_training_output(ar_loss, ar_accuracy, nar_loss, nar_accuracy, batch)

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """No features to normalize: the inputs are token ids."""
        return {}

    @torch.no_grad()
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
        """Synthesize S: (B, T'', Q) tokens (PAD_ID after each length) and the (B,) lengths T''.

        The signature is MaskedSynthesizer.generate's; this model is conditioned on the
        phonemes and ignores `semantic`. Codebook 1 is sampled (options: temperature, top-k,
        top-p) until the end token, at least one frame and at most ceil(max_length_ratio * T')
        frames (length_policy "exact": exactly T' frames, the end token never sampled); a
        guidance scale != 1 (options', else the model's) adds a phoneme-less pass and mixes the
        logits. Codebooks 2..Q are greedy. Call it in eval mode: dropout would differ between steps.
        """
        if phonemes is None or phonemes_lengths is None:
            raise ValueError("AR+NAR synthesis is conditioned on phonemes: none given")
        self.check_codebooks("est_tokens", est_tokens)
        options.reseed()
        first_codes, lengths = self.generate_first_codebook(
            est_tokens, est_tokens_lengths, phonemes, phonemes_lengths, options
        )
        no_drop = torch.zeros_like(phonemes_lengths, dtype=torch.bool)
        phonemes, phonemes_lengths = null_condition(phonemes, phonemes_lengths, no_drop, self.null_phoneme_id)
        codes = first_codes[..., None]
        for _ in range(1, self.num_codebooks):
            logits = self.nar(phonemes, phonemes_lengths, est_tokens, est_tokens_lengths, codes, lengths)
            codes = torch.cat([codes, logits.argmax(dim=-1, keepdim=True)], dim=2)
        return codes.masked_fill(~lengths_to_mask(lengths, codes.size(1))[..., None], PAD_ID), lengths

    def generate_first_codebook(
        self,
        est_tokens: torch.Tensor,
        est_tokens_lengths: torch.Tensor,
        phonemes: torch.Tensor,
        phonemes_lengths: torch.Tensor,
        options: SynthesisOptions,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The AR stage: (B, T'') codebook-1 tokens (valid up to each length) and lengths."""
        batch = est_tokens.size(0)
        scale = options.guidance(self.guidance_scale)
        guided = scale != 1.0
        drop = torch.zeros(batch, dtype=torch.bool, device=est_tokens.device)
        if guided:  # rows B..2B-1: the same utterances without phonemes
            phonemes, phonemes_lengths = phonemes.repeat(2, 1), phonemes_lengths.repeat(2)
            est_tokens, est_tokens_lengths = est_tokens.repeat(2, 1, 1), est_tokens_lengths.repeat(2)
            drop = torch.cat([drop, ~drop])
        phonemes, phonemes_lengths = null_condition(phonemes, phonemes_lengths, drop, self.null_phoneme_id)
        prefix, prefix_valid = self.ar.embed_prefix(phonemes, phonemes_lengths, est_tokens[..., 0], est_tokens_lengths)

        exact = options.length_policy == "exact"
        ratio = 1.0 if exact else options.max_length_ratio
        max_lengths = torch.ceil(est_tokens_lengths[:batch].double() * ratio).long().clamp(min=1)
        lengths = max_lengths.clone()
        finished = torch.zeros(batch, dtype=torch.bool, device=est_tokens.device)
        inputs = est_tokens.new_full((prefix.size(0), 1), self.ar.start_id)
        caches = self.ar.prefill(prefix, prefix_valid) if options.use_cache else None
        generated: List[torch.Tensor] = []
        for step in range(int(max_lengths.max())):
            if options.use_cache:
                logits, caches = self.ar.step(self.ar.embed_targets(inputs[:, -1:], step), prefix_valid, caches)
            else:
                all_valid = torch.ones_like(inputs, dtype=torch.bool)
                logits = self.ar.full_logits(prefix, prefix_valid, self.ar.embed_targets(inputs), all_valid)
                logits = logits[:, -1]
            if guided:
                logits = cfg_logits(logits[:batch], logits[batch:], scale)
            if step == 0 or exact:  # every output gets at least one frame; exact: T' frames, no end token
                logits[:, self.ar.end_id] = float("-inf")
            tokens, _ = sample_tokens(logits, options)
            ended = (tokens == self.ar.end_id) & ~finished
            lengths = torch.where(ended, torch.full_like(lengths, step), lengths)
            finished |= ended | (max_lengths <= step + 1)
            generated.append(tokens)
            if bool(finished.all()):
                break
            next_inputs = tokens.repeat(2) if guided else tokens
            inputs = torch.cat([inputs, next_inputs[:, None]], dim=1)
        codes = torch.stack(generated, dim=1)[:, : int(lengths.max())]
        return codes.masked_fill(~lengths_to_mask(lengths, codes.size(1)), PAD_ID), lengths
