"""Text-to-semantic model: phonemes -> speech units, the condition P of the masked synthesizer.

The paper (§3.4) takes P from SPEAR-TTS's pretrained w2v-BERT text-to-semantic model, which
is not released; ours is a small encoder-decoder transformer trained in the recipe from the
G2P phonemes of the transcripts (stage 9) to the stage-6 units of the clean speech. Its output
length need not be T': the masked synthesizer stretches P to the T' frames of Ŝ.

Decoder vocabulary: units 0 .. U-1, end U, start U + 1 (the start is input-only). Training is
teacher-forced cross-entropy over [units ; end]; inference is greedy until the end token or a
maximum length. Positions are sinusoidal (layers.segment_positions), so any length works.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, read_key_file, read_text, write_kv
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import PAD_ID, lengths_to_mask, segment_positions

logger = logging.getLogger(__name__)

IGNORE_ID = -100  # F.cross_entropy's ignore_index


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
        self, phonemes: torch.Tensor, phonemes_lengths: torch.Tensor, max_length: Optional[int] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Greedy units: (B, T) ids (PAD_ID after each length) and the (B,) lengths.

        Each utterance has at least one unit and stops at its end token or at max_length
        units (default: ceil(max_length_ratio * phonemes) + 10). Call it in eval mode.
        """
        memory, memory_padding = self.encode(phonemes, phonemes_lengths)
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


def load_text_to_semantic(train_config: Union[PathLike, Mapping[str, Any]], model_file: PathLike, device: str = "cpu") -> Tuple[TextToSemantic, TokenList]:
    """(model in eval mode, its phoneme TokenList) from ESPnet's config.yaml + .pth, strictly."""
    from sepalm_espnet.tasks.loading import build_trained_model
    from sepalm_espnet.tasks.t2s import TextToSemanticTask  # 20 s of ESPnet imports

    model, args = build_trained_model(TextToSemanticTask, train_config, model_file, device)
    return model, TokenList(args.token_list)  # build_model turned args.token_list into the list


def units_of_text_file(
    model: TextToSemantic,
    token_list: TokenList,
    phonemes_path: PathLike,
    output_path: PathLike,
    key_file: Optional[PathLike] = None,
    batch_size: int = 16,
    max_length: Optional[int] = None,
) -> Dict[str, List[int]]:
    """`key phonemes` lines (all, or key_file's) -> `key u1 u2 ...` lines, written atomically.

    An utterance without phonemes (empty transcript) cannot be conditioned on: an error naming it.
    """
    texts = read_text(phonemes_path)
    keys = sorted(texts) if key_file is None else sorted(read_key_file(key_file))
    missing = [key for key in keys if key not in texts]
    if missing:
        raise DataDirError(f"{phonemes_path}: {len(missing)} requested keys are missing, e.g. '{missing[0]}'")
    ids = {key: token_list.encode(texts[key]) for key in keys}
    empty = [key for key in keys if not ids[key]]
    if empty:
        raise DataDirError(f"{phonemes_path}: '{empty[0]}' has no phonemes ({len(empty)} such keys)")
    device = next(model.parameters()).device
    units: Dict[str, List[int]] = {}
    by_length = sorted(keys, key=lambda key: len(ids[key]))
    for start in range(0, len(by_length), batch_size):
        batch = by_length[start : start + batch_size]
        phonemes = nn.utils.rnn.pad_sequence(
            [torch.tensor(ids[key]) for key in batch], batch_first=True, padding_value=PAD_ID
        ).to(device)
        lengths = torch.tensor([len(ids[key]) for key in batch], device=device)
        generated, generated_lengths = model.generate(phonemes, lengths, max_length)
        for key, row, length in zip(batch, generated.cpu(), generated_lengths.cpu()):
            units[key] = row[: int(length)].tolist()
        logger.info("%s: %d of %d utterances", phonemes_path, len(units), len(keys))
    write_kv(output_path, {key: " ".join(map(str, values)) for key, values in units.items()})
    return units
