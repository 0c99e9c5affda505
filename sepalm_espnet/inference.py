"""Run a trained system on audio: `SeparatorModel.from_pretrained(src).separate(audio)`.

`src` is a packed archive (.zip, see sepalm_espnet/zoo.py), its unpacked directory, or an
ESPnet experiment directory (config.yaml + checkpoint). The full SepALM pipeline loads its own
components from the same archives and sits beside SeparatorModel here.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import soxr
import torch
import yaml
from espnet2.enh.espnet_model import ESPnetEnhancementModel

from sepalm_espnet import zoo
from sepalm_espnet.data.audio import AudioError, read_audio
from sepalm_espnet.data.kaldi_dir import PathLike
from sepalm_espnet.separator.long_audio import LongAudioSeparator
from sepalm_espnet.separator.registry import build_enh_model, enh_model_separate_fn, min_input_samples

AudioInput = Union[str, Path, np.ndarray, torch.Tensor]
# What ESPnet's trainer calls the average of the best checkpoints under our separator criterion.
DEFAULT_CHECKPOINT = "valid.si_snr_loss.ave.pth"


def resolve_pretrained(src: PathLike, cache_dir: Optional[PathLike] = None) -> Path:
    """A directory is used in place; an archive is verified and unpacked once into the cache."""
    src = Path(src)
    if src.is_dir():
        return src
    if src.is_file():
        return zoo.unpack(src, zoo.cached_unpack_dir(src, cache_dir))
    raise FileNotFoundError(f"{src}: no such archive or directory")


def separator_config_and_weights(root: Path, checkpoint: str) -> Tuple[Dict[str, Any], Path]:
    """From an unpacked archive (meta.yaml) or an experiment directory (config.yaml)."""
    if (root / zoo.META_NAME).is_file():
        files = zoo.component_files(root, zoo.SEPARATOR_COMPONENT)
        return zoo.load_component_config(root, zoo.SEPARATOR_COMPONENT), files[zoo.MODEL_ROLE]
    config_path = root / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{root}: neither an unpacked archive ({zoo.META_NAME}) nor an experiment (config.yaml)"
        )
    weights = root / checkpoint
    if not weights.is_file():
        available = sorted(path.name for path in root.glob("*.pth"))
        raise FileNotFoundError(f"{weights} not found; checkpoints in {root}: {available}")
    with open(config_path, encoding="utf-8") as f:
        return yaml.safe_load(f), weights


def as_samples(audio: AudioInput, sample_rate: Optional[int]) -> Tuple[np.ndarray, int]:
    """(samples shaped (T,) or (T, channels), rate) from a path, an array or a tensor."""
    if isinstance(audio, (str, Path)):
        samples, fs = read_audio(audio)
        if sample_rate is not None and sample_rate != fs:
            raise ValueError(f"{audio} is {fs} Hz, but sample_rate={sample_rate} was given")
        return samples, fs
    if sample_rate is None:
        raise ValueError("sample_rate is required when audio is an array or a tensor")
    if isinstance(audio, torch.Tensor):
        if not audio.is_floating_point():
            raise AudioError(f"expected floating-point samples in [-1, 1], got a {audio.dtype} tensor")
        audio = audio.detach().to("cpu", torch.float32).numpy()
    samples = np.asarray(audio)
    if not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"expected floating-point samples in [-1, 1], got {samples.dtype}")
    if samples.ndim not in (1, 2):
        raise AudioError(f"expected 1-D audio or 2-D multi-channel audio, got shape {samples.shape}")
    if samples.ndim == 2 and samples.shape[0] < samples.shape[1]:
        samples = samples.T  # channels-first -> (T, channels)
    return samples, int(sample_rate)


class SeparatorModel:
    """A trained separator: any audio in (path, array, tensor; any rate, mono or multi-channel),
    one float32 array per speaker out, at the input's rate and length.

    Input longer than one segment is separated segment by segment (LongAudioSeparator), so
    memory stays bounded whatever the length.
    """

    def __init__(self, model: ESPnetEnhancementModel, fs: int, **segment_options: float):
        """segment_options: segment_sec / hop_sec for LongAudioSeparator."""
        self.model = model
        self.fs = fs
        self.num_spk = model.num_spk
        self.long_audio = LongAudioSeparator(
            enh_model_separate_fn(model), model.num_spk, fs, min_samples=min_input_samples(model), **segment_options
        )

    @classmethod
    def from_pretrained(
        cls,
        src: PathLike,
        checkpoint: str = DEFAULT_CHECKPOINT,
        device: str = "cpu",
        cache_dir: Optional[PathLike] = None,
        **segment_options: float,
    ) -> "SeparatorModel":
        """src: archive (.zip), unpacked archive directory, or experiment directory; `checkpoint`
        names the weights file in an experiment directory."""
        root = resolve_pretrained(src, cache_dir)
        config, weights = separator_config_and_weights(root, checkpoint)
        model = build_enh_model(config, weights, device)
        fs = int(config["sample_rate"])
        logging.info("separator from %s: %s at %d Hz, %d speakers", src, weights.name, fs, model.num_spk)
        return cls(model, fs, **segment_options)

    def separate(self, audio: AudioInput, sample_rate: Optional[int] = None) -> List[np.ndarray]:
        """sample_rate: required for arrays and tensors; a file's own rate is used otherwise."""
        samples, fs = as_samples(audio, sample_rate)
        estimates = self.long_audio.separate_array(samples, fs, resample=True)
        if fs != self.fs:
            logging.info("resampling the estimates back to %d Hz (soxr)", fs)
            estimates = soxr.resample(np.ascontiguousarray(estimates.T), self.fs, fs).T
            shortfall = max(0, len(samples) - estimates.shape[1])
            estimates = np.pad(estimates, ((0, 0), (0, shortfall)))[:, : len(samples)]
        return [np.ascontiguousarray(estimate, dtype=np.float32) for estimate in estimates]


def __getattr__(name: str):
    """`from sepalm_espnet.inference import SepALM`: the pipeline module imports this one, so it
    is loaded on first use."""
    if name in ("SepALM", "SeparatedSpeaker"):
        from sepalm_espnet import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
