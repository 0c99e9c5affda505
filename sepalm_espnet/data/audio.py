"""Audio file I/O with errors that name the file (corrupt, empty, non-finite audio)."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import soundfile as sf

from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path


class AudioError(ValueError):
    """An audio file is unreadable or holds unusable samples; the message names the file."""


def wav_frame_counts(path: PathLike) -> Optional[Tuple[int, int]]:
    """(frames the header declares, frames the file holds) of a RIFF/RIFX WAV; None otherwise.

    libsndfile silently shortens the frame count of a truncated WAV to what is present, so
    the data chunk's declared size is compared with the bytes after it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            riff = f.read(12)
            if len(riff) < 12 or riff[:4] not in (b"RIFF", b"RIFX") or riff[8:12] != b"WAVE":
                return None
            endian = "<" if riff[:4] == b"RIFF" else ">"
            block_align = 0
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return None  # no data chunk: soundfile reports the file as unreadable
                chunk_id, chunk_size = header[:4], struct.unpack(endian + "I", header[4:])[0]
                if chunk_id == b"data":
                    if block_align <= 0:
                        return None
                    present = min(chunk_size, size - f.tell())
                    return chunk_size // block_align, present // block_align
                body = f.read(chunk_size) if chunk_id == b"fmt " else None
                if body is not None and len(body) >= 14:
                    block_align = struct.unpack(endian + "H", body[12:14])[0]
                else:
                    f.seek(chunk_size, 1)
                if chunk_size % 2:
                    f.seek(1, 1)  # RIFF chunks are word-aligned
    except OSError:
        return None  # unreadable: soundfile's error, with the file name, follows


def check_complete(path: PathLike) -> None:
    """Refuse a WAV whose data chunk is shorter than its header says (a cut-off copy)."""
    counts = wav_frame_counts(path)
    if counts is not None and counts[1] < counts[0]:
        raise AudioError(f"{path}: the header says {counts[0]} frames but the file holds "
                         f"{counts[1]} (truncated?)")


def audio_length(path: PathLike) -> Tuple[int, int]:
    """(frames, fs) of a complete audio file, for length checks without keeping the samples.

    WAV is checked by its header; other formats (FLAC, ...) are decoded through, since a
    header count is all a truncated stream's info would give.
    """
    check_complete(path)
    try:
        info = sf.info(str(path))
        if info.format in ("WAV", "WAVEX", "RF64", "W64"):
            return info.frames, info.samplerate
        decoded = sum(len(block) for block in sf.blocks(str(path), blocksize=65536))
    except Exception as exc:  # soundfile raises several types for bad files
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    if decoded != info.frames:
        raise AudioError(f"{path}: the header says {info.frames} frames but {decoded} could be "
                         f"decoded (truncated?)")
    return info.frames, info.samplerate


def read_audio(path: PathLike, dtype: str = "float32") -> Tuple[np.ndarray, int]:
    """Return (samples, fs): shape (T,) for mono, (T, C) for multi-channel."""
    check_complete(path)
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
