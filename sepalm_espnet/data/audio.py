"""Audio file I/O with errors that name the file (corrupt, empty, non-finite audio)."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import soundfile as sf

from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path


class AudioError(ValueError):
    """An audio file is unreadable or holds unusable samples; the message names the file."""


def read_audio(path: PathLike, dtype: str = "float32") -> Tuple[np.ndarray, int]:
    """Return (samples, fs): shape (T,) for mono, (T, C) for multi-channel."""
    try:
        data, fs = sf.read(str(path), dtype=dtype, always_2d=False)
    except Exception as exc:  # soundfile raises several types for bad files
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio is empty (0 samples)")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return data, fs


def write_audio(path: PathLike, data: np.ndarray, fs: int, subtype: str = "PCM_16") -> None:
    """Write atomically; the format follows the suffix (.wav or .flac)."""
    path = Path(path)
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: unsupported audio format (use .wav or .flac)")
    with atomic_path(path, suffix=path.suffix) as tmp:
        sf.write(str(tmp), data, fs, format=fmt, subtype=subtype)
