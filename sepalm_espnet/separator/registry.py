"""The separator slot: our separators in ESPnet's enh task (importing this module makes
`separator: sepformer` work), and `load_separator`, the one loader of any trained separator
(an ESPnet enh model, or SLM-SS, the generative separator with its own task).

ESPnet builds its argument parser (and the `--separator` choices) from
`espnet2.tasks.enh.separator_choices`, so registration has to happen at import time, before
any parser is built; updating the dict again is harmless.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

import torch
from espnet2.enh.encoder.conv_encoder import ConvEncoder
from espnet2.enh.espnet_model import ESPnetEnhancementModel
from espnet2.tasks.enh import EnhancementTask, separator_choices

from sepalm_espnet.data.kaldi_dir import PathLike
from sepalm_espnet.separator.long_audio import SeparateFn
from sepalm_espnet.separator.sepformer import SepFormerSeparator
from sepalm_espnet.slm_ss.inference import SlmSsSeparation
from sepalm_espnet.slm_ss.model import SlmSsDecodeOptions
from sepalm_espnet.tasks.loading import ConfigSource, build_trained_model, read_train_config

SEPARATORS = {"sepformer": SepFormerSeparator}
# What ESPnet's trainer calls the average of the best checkpoints under our separator criterion.
DEFAULT_CHECKPOINT = "valid.si_snr_loss.ave.pth"
# The recipe's --separator_type values; an SLM-SS training config says `model: slm_ss`.
ENH, SLM_SS = "enh", "slm_ss"
# What ESPnet's trainer names the checkpoint average of each kind's best_model_criterion.
DEFAULT_CHECKPOINTS = {ENH: DEFAULT_CHECKPOINT, SLM_SS: "valid.loss.ave.pth"}
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


def separator_type(config: Mapping[str, Any]) -> str:
    """ENH for an ESPnet enh training config (it names a `separator`), SLM_SS for SLM-SS's."""
    if config.get("model") == SLM_SS:
        return SLM_SS
    if "separator" in config:
        return ENH
    raise ValueError("neither an ESPnet enh config (no `separator:`) nor an SLM-SS one (`model: slm_ss`)")


@dataclass
class LoadedSeparator:
    """What segment-wise inference needs of any trained separator (`model`: its torch module).
    `statuses`: one entry per call of a separator that can fail softly (SLM-SS's length cap),
    else None."""

    model: torch.nn.Module
    separate: SeparateFn
    num_spk: int
    fs: Optional[int]
    min_samples: int
    kind: str
    statuses: Optional[List[str]] = None


def load_separator(
    config: ConfigSource,
    weights: PathLike,
    device: str = "cpu",
    slm_ss_options: SlmSsDecodeOptions = SlmSsDecodeOptions(),
) -> LoadedSeparator:
    """A trained separator of either kind from its training config (or the config.yaml beside
    `weights`). fs: the model's rate when its config records one."""
    config = read_train_config(config, weights)
    if separator_type(config) == SLM_SS:
        separation = SlmSsSeparation.from_files(config, weights, device, slm_ss_options)
        return LoadedSeparator(separation.model, separation, separation.num_spk, separation.fs, 1, SLM_SS,
                               separation.statuses)
    model = build_enh_model(config, weights, device)
    fs = config.get("sample_rate")
    return LoadedSeparator(model, enh_model_separate_fn(model), model.num_spk, None if fs is None else int(fs),
                           min_input_samples(model), ENH)
