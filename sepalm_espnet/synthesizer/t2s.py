"""Text-to-semantic inference: load a trained model (tasks.t2s, strictly and without
unpickling) and decode `key phonemes` files into `key u1 u2 ...` units, the `semantic` data of
the masked synthesizer. The model itself is synthesizer/t2s_model.py.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, read_key_file, read_text, write_kv
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.synthesizer.layers import PAD_ID
from sepalm_espnet.synthesizer.t2s_model import T2SDecodeOptions, TextToSemantic

logger = logging.getLogger(__name__)


def load_text_to_semantic(
    train_config: Union[PathLike, Mapping[str, Any]], model_file: PathLike, device: str = "cpu"
) -> Tuple[TextToSemantic, TokenList]:
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
    options: T2SDecodeOptions = T2SDecodeOptions(),
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
    for start in range(0, len(by_length), options.batch_size):
        batch = by_length[start : start + options.batch_size]
        phonemes = nn.utils.rnn.pad_sequence(
            [torch.tensor(ids[key]) for key in batch], batch_first=True, padding_value=PAD_ID
        ).to(device)
        lengths = torch.tensor([len(ids[key]) for key in batch], device=device)
        generated, generated_lengths = model.generate(phonemes, lengths, options.max_length, options.use_cache)
        for key, row, length in zip(batch, generated.cpu(), generated_lengths.cpu()):
            units[key] = row[: int(length)].tolist()
        logger.info("%s: %d of %d utterances", phonemes_path, len(units), len(keys))
    write_kv(output_path, {key: " ".join(map(str, values)) for key, values in units.items()})
    return units
