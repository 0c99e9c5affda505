"""Our separators in ESPnet's enh task: importing this module makes `separator: sepformer` work.

ESPnet builds its argument parser (and the `--separator` choices) from
`espnet2.tasks.enh.separator_choices`, so registration has to happen at import time, before
any parser is built; updating the dict again is harmless.
"""
from __future__ import annotations

import argparse
from typing import Any, List, Mapping, Optional, Tuple

import torch
from espnet2.enh.encoder.conv_encoder import ConvEncoder
from espnet2.enh.espnet_model import ESPnetEnhancementModel
from espnet2.tasks.enh import EnhancementTask, separator_choices

from sepalm_espnet.data.kaldi_dir import PathLike
from sepalm_espnet.separator.long_audio import SeparateFn
from sepalm_espnet.separator.sepformer import SepFormerSeparator
from sepalm_espnet.tasks.loading import build_trained_model

SEPARATORS = {"sepformer": SepFormerSeparator}
# What ESPnet's trainer calls the average of the best checkpoints under our separator criterion.
DEFAULT_CHECKPOINT = "valid.si_snr_loss.ave.pth"
separator_choices.classes.update(SEPARATORS)


def build_enh_model(config: Mapping[str, Any], weights: PathLike, device: str = "cpu") -> ESPnetEnhancementModel:
    """A trained enh model in eval mode, loaded safely (tasks.loading)."""
    return build_trained_model(EnhancementTask, config, weights, device)[0]


def load_enh_model(
    train_config: Optional[PathLike],
    model_file: PathLike,
    device: str = "cpu",
) -> Tuple[ESPnetEnhancementModel, argparse.Namespace]:
    """A trained enh model (config.yaml + .pth, as ESPnet saves them) in eval mode.

    Without `train_config`, the config.yaml beside `model_file` (ESPnet's experiment layout).
    """
    return build_trained_model(EnhancementTask, train_config, model_file, device)


def min_input_samples(model: ESPnetEnhancementModel) -> int:
    """Shortest waveform the encoder accepts: a conv encoder needs one full kernel."""
    return model.encoder.kernel_size if isinstance(model.encoder, ConvEncoder) else 1


def enh_model_separate_fn(model: ESPnetEnhancementModel) -> SeparateFn:
    """(1, T) mixture -> [(1, T)] * num_spk, the same computation as ESPnet's SeparateSpeech."""
    if model.always_forward_in_48k:
        raise ValueError("models trained with always_forward_in_48k are not supported")
    device = next(model.parameters()).device
    normalize = model.normalize_variance or model.normalize_variance_per_ch

    @torch.no_grad()
    def separate(mixture: torch.Tensor) -> List[torch.Tensor]:
        mixture = mixture.to(device)
        ones = mixture.new_ones(mixture.size(0), 1)
        scale = mixture.std(dim=1, keepdim=True) if normalize else ones
        mixture = mixture / scale
        lengths = torch.full((mixture.size(0),), mixture.size(1), dtype=torch.long, device=device)
        estimates, _, _, _ = model.forward_enhance(mixture, lengths)
        return [est * scale for est in estimates]

    return separate
