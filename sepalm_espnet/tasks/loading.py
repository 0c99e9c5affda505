"""Trained models of any of our ESPnet tasks, loaded safely: the one path every inference takes.

ESPnet's `build_model_from_file` loads with weights_only=False and strict=False: an untrusted
file could run code, and a mismatched one would leave layers silently random. Here the model is
built by the task from its training config and the weights are read without unpickling
(`read_state_dict`; zoo packs weights through it too) and must match every parameter. (A LoRA
corrector's state dict without the frozen LM still loads strictly: the model's load hook
supplies the frozen weights.)
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple, Union

import safetensors.torch
import torch
import yaml

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike

ConfigSource = Union[None, PathLike, Mapping[str, Any]]


class UnsafeWeightsError(ValueError):
    """A weights file holds something other than tensors; loading it could run arbitrary code."""


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Weights from .safetensors, or from a .pth without unpickling arbitrary objects."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return safetensors.torch.load_file(str(path))
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeWeightsError(
            f"{path}: refusing to unpickle objects other than tensors (weights_only=True): {exc}"
        ) from exc
    if not isinstance(state_dict, dict):
        raise UnsafeWeightsError(f"{path}: expected a state dict, got {type(state_dict).__name__}")
    not_tensors = [name for name, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise UnsafeWeightsError(f"{path}: entries that are not tensors: {not_tensors[:5]}")
    return state_dict


def read_train_config(config: ConfigSource, model_file: PathLike) -> dict:
    """A config already read (e.g. zoo.load_component_config), a config.yaml, or (None) the
    config.yaml beside `model_file`, ESPnet's experiment layout."""
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config) if config is not None else Path(model_file).parent / "config.yaml"
    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f)
    if not isinstance(loaded, dict):
        raise DataDirError(f"{path}: not a YAML mapping")
    return loaded


def build_trained_model(
    task: Any, config: ConfigSource, model_file: PathLike, device: str = "cpu"
) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """(model in eval mode on `device`, the config as ESPnet's args after task.build_model)."""
    args = argparse.Namespace(**read_train_config(config, model_file))
    model = task.build_model(args)
    model.load_state_dict(read_state_dict(model_file), strict=True)
    return model.to(device).eval(), args

