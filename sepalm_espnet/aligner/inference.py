"""Aligner inference (stage 13): s̃ = aligner(ŝ, s*) for every utterance of an estimate scp.

The model loads through tasks.loading (strictly and without unpickling), from files or from a
zoo archive: this module sits above both (see sepalm_espnet/__init__.py).
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from sepalm_espnet import zoo
from sepalm_espnet.aligner.model import AlignerBuilder, AlignerModel, STFTAligner, fit_synthesized_length
from sepalm_espnet.data.audio import write_audio
from sepalm_espnet.data.format import load_mono
from sepalm_espnet.data.kaldi_dir import PathLike, read_key_file, select_entries, write_kv
from sepalm_espnet.tasks.loading import ConfigSource, build_trained_model

logger = logging.getLogger(__name__)

SPEECH_SCP = "speech.scp"
# STFTAligner's own default rate, used when a config does not record one.
DEFAULT_FS = inspect.signature(STFTAligner).parameters["fs"].default


class AlignerInferenceError(ValueError):
    """The aligner produced unusable output for an utterance; the message names it."""


class AlignerInference:
    """A trained aligner on numpy arrays at its own sample rate `fs`."""

    def __init__(self, model: AlignerModel, fs: int):
        self.model = model.eval()
        self.fs = fs
        self.device = next(model.parameters()).device

    @classmethod
    def from_files(
        cls, train_config: ConfigSource, model_file: PathLike, device: str = "cpu"
    ) -> "AlignerInference":
        """The training run's config (a dict, a config.yaml, or None: the one beside model_file)."""
        # The task's build_model without importing ESPnet's task machinery (~15 s a process).
        model, args = build_trained_model(AlignerBuilder, train_config, model_file, device)
        return cls(model, int((args.model_conf or {}).get("fs", DEFAULT_FS)))

    @classmethod
    def from_pretrained(cls, src: zoo.PretrainedSource, device: str = "cpu",
                        cache_dir: Optional[PathLike] = None) -> "AlignerInference":
        """The `aligner` component of a packed archive (.zip) or its unpacked directory."""
        root = zoo.resolve_pretrained(src, cache_dir)
        files = zoo.loadable_files(root, zoo.ALIGNER_COMPONENT)
        return cls.from_files(zoo.load_component_config(root, zoo.ALIGNER_COMPONENT), files[zoo.MODEL_ROLE], device)

    def align(self, est: np.ndarray, syn: np.ndarray, where: str = "input") -> np.ndarray:
        """(T,) ŝ and s* of any length -> (T,) float32 s̃; s* is cropped or zero-padded to T."""
        data = fit_synthesized_length(where, {"speech_est": np.asarray(est, np.float32), "speech_syn": np.asarray(syn, np.float32)})
        with torch.inference_mode():
            aligned = self.model.aligner(
                torch.from_numpy(data["speech_est"])[None].to(self.device),
                torch.from_numpy(np.ascontiguousarray(data["speech_syn"]))[None].to(self.device),
            )[0]
        aligned = aligned.float().cpu().numpy()
        if not np.all(np.isfinite(aligned)):
            raise AlignerInferenceError(f"{where}: the aligner output holds NaN or infinite samples")
        return aligned


def align_scp(
    aligner: AlignerInference,
    est_scp: PathLike,
    syn_scp: PathLike,
    output_dir: PathLike,
    key_file: Optional[PathLike] = None,
) -> Dict[str, Path]:
    """Write <output_dir>/wavs/<key>.wav (float WAV at aligner.fs) and a sorted speech.scp.

    Keys: those of `key_file` (one JOB's split) or all of est_scp; each must be in syn_scp.
    """
    keys = read_key_file(key_file)
    estimates = select_entries(est_scp, keys)
    synthesized = select_entries(syn_scp, list(estimates))
    output_dir = Path(output_dir)
    outputs: Dict[str, Path] = {}
    for key, est_path in estimates.items():
        est = load_mono(est_path, f"{est_scp} (key {key})", aligner.fs)
        syn = load_mono(synthesized[key], f"{syn_scp} (key {key})", aligner.fs)
        aligned = aligner.align(est, syn, where=f"utterance '{key}'")
        outputs[key] = output_dir / "wavs" / f"{key}.wav"
        write_audio(outputs[key], aligned, aligner.fs, subtype="FLOAT")
        logger.info("aligned %s (%d samples)", key, len(aligned))
    write_kv(output_dir / SPEECH_SCP, {key: str(path) for key, path in outputs.items()})
    return outputs

