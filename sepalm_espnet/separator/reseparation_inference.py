"""Re-separation inference (Table 3 (a)): one speaker's estimate from the mixture and that
speaker's corrected phonemes, for every `<utt>_spk<n>` of a phonemes text.

The model loads through tasks.loading (strictly, without unpickling): a runtime module (see
sepalm_espnet/__init__.py). Whole utterances: the transcript covers all of one, so there is no
segment-wise mode.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from sepalm_espnet.data.audio import write_audio
from sepalm_espnet.data.format import load_scp_audio, resample_mono
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, read_key_file, read_text, select_entries, write_kv
from sepalm_espnet.data.speakers import value_of_estimate
from sepalm_espnet.separator.reseparation import ReseparatorBuilder, TranscriptSepFormerModel
from sepalm_espnet.synthesizer.g2p import TokenList
from sepalm_espnet.tasks.loading import ConfigSource, build_trained_model

logger = logging.getLogger(__name__)

SPEECH_SCP = "speech.scp"


@dataclass(frozen=True)
class ReseparationOptions:
    resample: bool = field(
        default=False, metadata={"help": "resample mixtures of another rate to the model's instead of refusing"}
    )


class ReseparationInferenceError(ValueError):
    """Unusable input or output for an utterance; the message names it."""


class ReseparationInference:
    """A trained re-separator on numpy arrays at its own rate `fs`."""

    def __init__(self, model: TranscriptSepFormerModel, token_list: TokenList):
        self.model = model.eval()
        self.token_list = token_list
        self.fs = model.separator.fs
        self.device = next(model.parameters()).device

    @classmethod
    def from_files(cls, train_config: ConfigSource, model_file: PathLike, device: str = "cpu") -> "ReseparationInference":
        """The training run's config (a dict, a config.yaml, or None: the one beside model_file)."""
        # The task's build_model without ESPnet's task imports (~15 s a process).
        model, args = build_trained_model(ReseparatorBuilder, train_config, model_file, device)
        return cls(model, TokenList(args.token_list))

    def extract(self, mixture: np.ndarray, phonemes: str, where: str = "input") -> np.ndarray:
        """(T,) mixture at self.fs + one speaker's phoneme string -> (T,) float32 estimate."""
        ids = torch.tensor(self.token_list.encode(phonemes), dtype=torch.long)[None]
        speech = torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32))[None]
        kernel_size = self.model.separator.encoder.kernel_size
        if speech.size(1) < kernel_size:
            raise ReseparationInferenceError(f"{where}: {speech.size(1)} samples, fewer than the filter's {kernel_size}")
        with torch.inference_mode():
            estimate = self.model.separator(
                speech.to(self.device), torch.tensor([speech.size(1)], device=self.device),
                ids.to(self.device), torch.tensor([ids.size(1)], device=self.device),
            )[0]
        estimate = estimate.float().cpu().numpy()
        if not np.all(np.isfinite(estimate)):
            raise ReseparationInferenceError(f"{where}: the re-separator output holds NaN or infinite samples")
        return estimate


def reseparate_scp(
    reseparator: ReseparationInference,
    mix_scp: PathLike,
    phonemes_text: PathLike,
    output_dir: PathLike,
    key_file: Optional[PathLike] = None,
    options: ReseparationOptions = ReseparationOptions(),
) -> Dict[str, Path]:
    """Write <output_dir>/wavs/<key>.wav (float WAV at reseparator.fs) and a sorted speech.scp.

    Keys: those of `key_file` (one JOB's split) or all of the phonemes text, `<utt>_spk<n>`;
    mix_scp is keyed by utterance (a data dir's wav.scp) or by the same keys.
    """
    keys = read_key_file(key_file)
    phonemes = read_text(phonemes_text)
    keys = sorted(phonemes) if keys is None else sorted(keys)
    missing = [key for key in keys if key not in phonemes]
    if missing:
        raise DataDirError(f"{phonemes_text}: {len(missing)} requested keys are missing, e.g. '{missing[0]}'")
    mixtures = select_entries(mix_scp)
    output_dir = Path(output_dir)
    outputs: Dict[str, Path] = {}
    for key in keys:
        where = f"{mix_scp} (key {key})"
        data, fs_in = load_scp_audio(value_of_estimate(key, mixtures, str(mix_scp)), where)
        if fs_in != reseparator.fs and not options.resample:
            raise ReseparationInferenceError(f"{where}: {fs_in} Hz, the model's rate is {reseparator.fs} Hz (--resample true)")
        mixture = resample_mono(data, fs_in, reseparator.fs, where).astype(np.float32)
        estimate = reseparator.extract(mixture, phonemes[key], where=f"utterance '{key}'")
        outputs[key] = output_dir / "wavs" / f"{key}.wav"
        write_audio(outputs[key], estimate, reseparator.fs, subtype="FLOAT")
        logger.info("re-separated %s (%d samples)", key, len(estimate))
    write_kv(output_dir / SPEECH_SCP, {key: str(path) for key, path in outputs.items()})
    return outputs
