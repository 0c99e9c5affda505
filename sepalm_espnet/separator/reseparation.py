"""Re-separation ablation (paper §4.5, Table 3 Exp. (a)): a SepFormer that extracts one speaker
from the mixture, conditioned on that speaker's corrected transcript (target speech extraction).

The paper: "we employed a G2P tool to convert the text into phoneme sequences, which were
subsequently mapped onto a series of learnable embedding vectors. We utilized the audio
embeddings from the intermediate layers of the SepFormer as the value and key, while the
phoneme embeddings served as the query for feature fusion based on cross-attention."

Taken literally, query = phonemes gives one output per phoneme, while a separator needs one
mask value per audio frame. What this module does (TranscriptFusion), in two attentions:

(i)  the paper's sentence: the phoneme embeddings (nn.Embedding over the G2P token list, plus
     sinusoidal positions) are the query, the SepFormer features after the first dual-path
     block ("intermediate", overlap-added back to frames) are key and value. This is one
     transformer decoder layer (phoneme self-attention, that cross-attention, FFN; pre-LN),
     padded phonemes and padded frames masked out. Its output is one vector per phoneme
     that carries the audio of the frames where the target speaker's phonemes are heard:
     a speaker-aware summary of the transcript.
(ii) back to the frame rate: every audio frame attends to that summary (query = frames,
     key/value = summary, padded phonemes masked) and the result is added to the frame's
     features (residual, pre-LN), so each frame learns whether it belongs to the speaker the
     transcript describes.

The remaining dual-path blocks then see conditioned features and one mask head (SepFormer's,
for num_spk = 1) gives the target speaker's mask: one estimate per (mixture, transcript). The
encoder and decoder are ESPnet's `conv` ones, as for the separator; the dual-path blocks and
chunking are the separator's own (separator/sepformer.py).

Padding: phonemes past an item's length never enter an attention, so a padded transcript
gives the output it gives alone. (Audio padding is not masked in the dual-path blocks, as in
the separator: their norms and the chunking see the whole padded signal.) An empty transcript
is read as one <blank> token, so every item has a key in attention (ii).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from espnet2.enh.decoder.conv_decoder import ConvDecoder
from espnet2.enh.encoder.conv_encoder import ConvEncoder
from espnet2.enh.loss.criterions.time_domain import SISNRLoss
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

from sepalm_espnet.separator.sepformer import DualPathBlock, overlap_add, sinusoidal_positions, split_chunks
from sepalm_espnet.synthesizer.layers import lengths_to_mask

# Id read for padded and missing phonemes (the token list's <blank>, always id 0).
BLANK_ID = 0
# The separator's SI-SNR bound: a perfect estimate has a finite loss.
SI_SNR_CLAMP_DB = 70.0


class TranscriptFusion(nn.Module):
    """(i) phonemes query the audio features, (ii) the frames query that summary (module doc)."""

    def __init__(self, phoneme_vocab_size: int, d_model: int, nhead: int, dim_feedforward: int,
                 dropout: float, layer_norm_eps: float):
        super().__init__()
        self.phoneme_embedding = nn.Embedding(phoneme_vocab_size, d_model)
        self.phonemes_query_audio = nn.TransformerDecoderLayer(
            d_model, nhead, dim_feedforward=dim_feedforward, dropout=dropout,
            layer_norm_eps=layer_norm_eps, batch_first=True, norm_first=True,
        )
        self.summary_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.frame_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.frames_query_summary = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)

    def forward(self, frames: torch.Tensor, frame_lengths: torch.Tensor, phonemes: torch.Tensor,
                phoneme_lengths: torch.Tensor) -> torch.Tensor:
        """frames (B, T, D), phonemes (B, L) ids (lengths >= 1) -> conditioned frames (B, T, D)."""
        if phonemes.size(1) == 0:  # a batch of empty transcripts: one <blank> each
            phonemes = nn.functional.pad(phonemes, (0, 1), value=BLANK_ID)
        phoneme_pad = ~lengths_to_mask(phoneme_lengths, phonemes.size(1))
        frame_pad = ~lengths_to_mask(frame_lengths, frames.size(1))
        query = self.phoneme_embedding(phonemes.masked_fill(phoneme_pad, BLANK_ID))
        query = query + sinusoidal_positions(query.size(1), query.size(2), query.device, query.dtype)
        summary = self.phonemes_query_audio(
            query, frames, tgt_key_padding_mask=phoneme_pad, memory_key_padding_mask=frame_pad
        )
        summary = self.summary_norm(summary)
        context, _ = self.frames_query_summary(
            self.frame_norm(frames), summary, summary, key_padding_mask=phoneme_pad, need_weights=False
        )
        return frames + context


class TranscriptConditionedSeparator(nn.Module):
    """Mixture (B, T) + one speaker's phonemes (B, L) -> that speaker's estimate (B, T).

    SepFormer layout and sizes (separator/sepformer.py, conf train_sep_sepformer_*.yaml), with
    TranscriptFusion after the first of `num_blocks` (>= 2) dual-path blocks.
    """

    def __init__(
        self,
        phoneme_vocab_size: int,
        encoder_channel: int = 256,
        kernel_size: int = 16,
        stride: int = 8,
        d_model: int = 256,
        nhead: int = 8,
        dim_feedforward: int = 1024,
        num_layers: int = 8,
        num_blocks: int = 2,
        chunk_size: int = 250,
        dropout: float = 0.0,
        activation: str = "relu",
        layer_norm_eps: float = 1e-6,
        fs: int = 16000,
    ):
        super().__init__()
        self.fs = fs  # the rate it is trained at; recorded in config.yaml for inference
        if num_blocks < 2:
            raise ValueError(f"num_blocks must be >= 2 (fusion sits after the first), got {num_blocks}")
        if chunk_size < 2 or chunk_size % 2:
            raise ValueError(f"chunk_size must be even (50% overlap), got {chunk_size}")
        self.chunk_size = chunk_size
        self.encoder = ConvEncoder(encoder_channel, kernel_size, stride)
        self.decoder = ConvDecoder(encoder_channel, kernel_size, stride)
        self.input_norm = nn.GroupNorm(1, encoder_channel, eps=1e-8)
        self.input_projection = nn.Conv1d(encoder_channel, d_model, 1, bias=False)
        transformer_options = dict(nhead=nhead, dim_feedforward=dim_feedforward, num_layers=num_layers,
                                   dropout=dropout, activation=activation, layer_norm_eps=layer_norm_eps)
        self.blocks = nn.ModuleList(DualPathBlock(d_model, **transformer_options) for _ in range(num_blocks))
        self.fusion = TranscriptFusion(phoneme_vocab_size, d_model, nhead, dim_feedforward, dropout, layer_norm_eps)
        # SepFormer's mask head for one speaker.
        self.speaker_split = nn.Sequential(nn.PReLU(), nn.Conv2d(d_model, d_model, 1))
        self.output = nn.Sequential(nn.Conv1d(d_model, d_model, 1), nn.Tanh())
        self.output_gate = nn.Sequential(nn.Conv1d(d_model, d_model, 1), nn.Sigmoid())
        self.mask_projection = nn.Conv1d(d_model, encoder_channel, 1, bias=False)

    def forward(self, speech_mix: torch.Tensor, speech_lengths: torch.Tensor, phonemes: torch.Tensor,
                phoneme_lengths: torch.Tensor) -> torch.Tensor:
        features, frame_lengths = self.encoder(speech_mix, speech_lengths)
        frames = features.size(1)
        hidden = self.input_projection(self.input_norm(features.transpose(1, 2)))
        chunks = self.blocks[0](split_chunks(hidden, self.chunk_size))
        # Intermediate features at the frame rate (B, T, D) as key and value of the fusion.
        intermediate = overlap_add(chunks, frames).transpose(1, 2)
        conditioned = self.fusion(intermediate, frame_lengths, phonemes, phoneme_lengths.clamp_min(1))
        chunks = split_chunks(conditioned.transpose(1, 2), self.chunk_size)
        for block in self.blocks[1:]:
            chunks = block(chunks)
        hidden = overlap_add(self.speaker_split(chunks), frames)
        hidden = self.output(hidden) * self.output_gate(hidden)
        mask = torch.relu(self.mask_projection(hidden)).transpose(1, 2)
        estimate, _ = self.decoder(features * mask, speech_lengths)
        return estimate


def masked_si_snr(reference: torch.Tensor, estimate: torch.Tensor, lengths: torch.Tensor,
                  si_snr_loss: nn.Module) -> torch.Tensor:
    """(B,) SI-SNR in dB over each item's own samples (zero-mean there), in float64 so a padded
    item scores as it does alone (the aligner's loss, aligner/model.py)."""
    mask = lengths_to_mask(lengths, reference.size(-1))
    count = lengths.unsqueeze(1).to(torch.float64)

    def zero_mean(signal: torch.Tensor) -> torch.Tensor:
        signal = signal.to(torch.float64) * mask
        return (signal - signal.sum(dim=1, keepdim=True) / count) * mask

    return -si_snr_loss(zero_mean(reference), zero_mean(estimate)).to(reference.dtype)


class TranscriptSepFormerModel(AbsESPnetModel):
    """The re-separator as an ESPnet model: loss = -SI-SNR against the transcript's speaker.

    Batches (the re-separation task): speech_mix, phonemes (ids, padded with a negative id) and
    speech_ref, with their `*_lengths`; one example per (mixture, speaker).
    """

    def __init__(self, separator: TranscriptConditionedSeparator):
        super().__init__()
        self.separator = separator
        self.si_snr_loss = SISNRLoss(clamp_db=SI_SNR_CLAMP_DB, zero_mean=False)

    def forward(
        self,
        speech_mix: torch.Tensor,
        phonemes: torch.Tensor,
        speech_ref: torch.Tensor,
        speech_mix_lengths: Optional[torch.Tensor] = None,
        phonemes_lengths: Optional[torch.Tensor] = None,
        speech_ref_lengths: Optional[torch.Tensor] = None,
        utt_id: Optional[List[str]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """ESPnet's trainer adds the batch's `utt_id`; the loss does not depend on it."""
        batch_size, total_length = speech_mix.shape
        if speech_mix_lengths is None:
            speech_mix_lengths = torch.full((batch_size,), total_length, device=speech_mix.device)
        if phonemes_lengths is None:
            phonemes_lengths = torch.full((batch_size,), phonemes.size(1), device=phonemes.device)
        if speech_ref_lengths is not None and not torch.equal(speech_ref_lengths, speech_mix_lengths):
            raise ValueError(f"speech_ref lengths {speech_ref_lengths.tolist()} differ from speech_mix's")
        estimate = self.separator(speech_mix, speech_mix_lengths, phonemes, phonemes_lengths)
        si_snr = masked_si_snr(speech_ref, estimate, speech_mix_lengths, self.si_snr_loss)
        loss = -si_snr.mean()
        with torch.no_grad():
            si_snr_mix = masked_si_snr(speech_ref, speech_mix, speech_mix_lengths, self.si_snr_loss)
            stats = dict(loss=loss.detach(), si_snr=si_snr.mean(), si_snri=(si_snr - si_snr_mix).mean())
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def collect_feats(self, **batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """No normalisation statistics: the separator normalises its features itself."""
        return {}


# `model:` names of the re-separation config (the task's ClassChoices use this table).
RESEPARATORS = {"transcript_sepformer": TranscriptConditionedSeparator}


class ReseparatorBuilder:
    """`build_model(args)` of the re-separation task without its ESPnet task imports (~15 s a
    process), for inference: tasks.loading.build_trained_model(ReseparatorBuilder, ...).

    args.token_list (the list itself once saved in config.yaml, or a file) sets the phoneme
    vocabulary size."""

    @staticmethod
    def build_model(args) -> TranscriptSepFormerModel:
        from sepalm_espnet.synthesizer.g2p import TokenList

        if args.model not in RESEPARATORS:
            raise ValueError(f"unknown re-separation model '{args.model}'; choose from {sorted(RESEPARATORS)}")
        token_list = args.token_list
        if token_list is None:
            raise ValueError("the re-separation model needs --token_list (the phoneme token list)")
        if isinstance(token_list, str):
            token_list = TokenList.from_file(token_list).tokens
            args.token_list = token_list  # config.yaml then carries the list itself
        return TranscriptSepFormerModel(
            RESEPARATORS[args.model](phoneme_vocab_size=len(token_list), **(args.model_conf or {}))
        )
