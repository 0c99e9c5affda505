"""WavLM features as SLM-SS's mixture encoder (the paper: WavLM Large), a MIXTURE_ENCODERS entry.

Features are one hidden state of a transformers WavLMModel (`layer` k: 0 is the transformer's
input, the projected CNN features plus the positional convolution; k the output of transformer
layer k) or, with `layer` None, a learnt softmax-weighted sum of all of them (SUPERB's weighted
sum). Transformer layers above a chosen `layer` are dropped at load: they would cost time and
memory and never be read.

Frames: WavLM's own conv grid, `_get_feat_extract_output_lengths` (Large and Base: 20 ms hop,
25 ms receptive field, floor((N - 400) / 320) + 1 frames; an input shorter than one receptive
field is zero-padded to one frame). That is 50 frames/s, DAC 16 kHz's rate; EnCodec 24 kHz
writes 75 frames/s, so with EnCodec the memory is not on the token grid.

Padding: models with `feat_extract_norm` "layer" (WavLM Large) get the attention mask built
from `lengths`, as transformers' docs ask, and the features of a mixture's frames do not depend
on the padding after it; "group" models (WavLM Base) must not be given one (their first conv
normalises over the whole padded input), so batch similar lengths for them.

`freeze` (the paper's use): no gradient reaches WavLM, which stays in eval mode (no dropout,
no SpecAugment masking) while the parent trains; only the layer weights learn. Either way the
parent's state_dict holds WavLM's weights under `<encoder>.wavlm.` (as ESPnet's frontends keep
theirs), so a trained checkpoint is self-contained: about 1.2 GB for WavLM Large in float32.
Unfrozen, transformers' training-time behaviour applies (layerdrop, SpecAugment masking); under
DDP, WavLM parameters that no chosen layer reads (Large's final layer norm) need ESPnet's
`--unused_parameters true`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn

from sepalm_espnet.synthesizer.encodec import load_transformers_model
from sepalm_espnet.synthesizer.layers import lengths_to_mask

logger = logging.getLogger(__name__)

WAVLM_SAMPLE_RATE = 16000


class WavLMEncoderError(ValueError):
    """A WavLM checkpoint or option is unusable; the message says why."""


def read_do_normalize(source: str, local_files_only: bool) -> bool:
    """The `do_normalize` of the saved preprocessor; without one, raw waveforms."""
    from transformers import Wav2Vec2FeatureExtractor

    try:
        return bool(Wav2Vec2FeatureExtractor.from_pretrained(source, local_files_only=local_files_only).do_normalize)
    except OSError:  # no preprocessor_config.json beside the weights
        return False


def normalize_waveforms(speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over each mixture's own samples (Wav2Vec2FeatureExtractor's
    do_normalize, padding excluded); the padding stays zero."""
    valid = lengths_to_mask(lengths, speech.size(1)).to(speech.dtype)
    count = valid.sum(dim=1, keepdim=True).clamp_min(1)
    mean = (speech * valid).sum(dim=1, keepdim=True) / count
    variance = ((speech - mean).square() * valid).sum(dim=1, keepdim=True) / count
    return (speech - mean) / torch.sqrt(variance + 1e-7) * valid


class WavLMMixtureEncoder(nn.Module):
    """(B, N) 16 kHz mixtures -> (B, T, hidden_size) WavLM features and (B,) frame lengths."""

    def __init__(
        self,
        model: str,
        layer: Optional[int] = None,
        freeze: bool = True,
        sample_rate: int = WAVLM_SAMPLE_RATE,
        normalize: Optional[bool] = None,
    ):
        """model: a transformers WavLMModel directory or hub id (a hub id is read from the local
        cache when HF_HUB_OFFLINE is set); layer: that hidden state (0..num_hidden_layers), None:
        the weighted sum of all; normalize: per-mixture mean/variance normalisation of the
        waveform, None: the saved preprocessor's `do_normalize` (WavLM Large was pre-trained on
        normalised waveforms, microsoft/unilm#708: give True if its preprocessor_config.json
        says otherwise)."""
        super().__init__()
        # Imported here: transformers takes seconds to import, which the conv encoder need not pay.
        from huggingface_hub import constants
        from transformers import WavLMModel

        if sample_rate != WAVLM_SAMPLE_RATE:
            raise WavLMEncoderError(f"WavLM reads {WAVLM_SAMPLE_RATE} Hz waveforms, not {sample_rate} Hz: "
                                    "resample the data (recipe stage 2, fs)")
        self.source = str(model)
        self.wavlm = load_transformers_model(WavLMModel, self.source, WavLMEncoderError)
        config = self.wavlm.config
        num_layers = config.num_hidden_layers
        if layer is not None and not 0 <= layer <= num_layers:
            raise WavLMEncoderError(f"{self.source}: layer {layer} out of range 0..{num_layers}")
        if layer is not None and layer < num_layers:
            # Layer `layer` stays the last one run (layer 0, the first layer's input, needs one).
            kept = max(layer, 1)
            del self.wavlm.encoder.layers[kept:]
            config.num_hidden_layers = kept
        self.layer = layer
        self.freeze = freeze
        self.sample_rate = sample_rate
        self.output_dim = int(config.hidden_size)
        self.use_attention_mask = config.feat_extract_norm == "layer"
        if normalize is None:
            normalize = read_do_normalize(self.source, Path(self.source).is_dir() or constants.is_offline_mode())
        self.normalize = bool(normalize)
        self.receptive_field = 1
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            self.receptive_field = (self.receptive_field - 1) * stride + kernel
        if layer is None:
            self.layer_weights = nn.Parameter(torch.zeros(num_layers + 1))
        if freeze:
            self.wavlm.requires_grad_(False)
            self.wavlm.eval()
        logger.info("%s: %s, %s, waveform normalisation %s", self.source,
                    "weighted sum of all layers" if layer is None else f"layer {layer}",
                    "frozen" if freeze else "fine-tuned", self.normalize)

    def train(self, mode: bool = True) -> "WavLMMixtureEncoder":
        super().train(mode)
        if self.freeze:
            self.wavlm.eval()
        return self

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames of mixtures of `lengths` samples (at least one: shorter ones are padded)."""
        return self.wavlm._get_feat_extract_output_lengths(lengths.clamp_min(self.receptive_field)).long()

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N) float waveform at 16 kHz, (B,) sample lengths -> (B, T, D) features, (B,) frame lengths.

        Features of padded frames are zeros."""
        if speech.ndim != 2:
            raise ValueError(f"expected (B, N) single-channel waveforms, got {tuple(speech.shape)}")
        lengths = lengths.to(speech.device)
        speech = speech.float() * lengths_to_mask(lengths, speech.size(1))
        if self.normalize:
            speech = normalize_waveforms(speech, lengths)
        speech = nn.functional.pad(speech, (0, max(0, self.receptive_field - speech.size(1))))
        padded_lengths = lengths.clamp_min(self.receptive_field)
        attention_mask = lengths_to_mask(padded_lengths, speech.size(1)).long() if self.use_attention_mask else None
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden_states = self.wavlm(speech, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        if self.layer is None:
            weights = torch.softmax(self.layer_weights, dim=0)
            features = sum(weight * hidden for weight, hidden in zip(weights, hidden_states))
        else:
            features = hidden_states[self.layer]
        frame_lengths = self.frame_lengths(lengths)
        return features * lengths_to_mask(frame_lengths, features.size(1))[..., None], frame_lengths
