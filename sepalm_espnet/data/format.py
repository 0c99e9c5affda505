"""Stage 2: dump every audio scp of a data dir at one sample rate, mono, as wav or flac.

Work is sharded by key files (JOB splitting); `merge_formatted_dir` then joins the shards,
copies the text-like files and validates the result before the stage marks itself done.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import kaldiio
import librosa
import numpy as np
import soundfile as sf

from sepalm_espnet.data.audio import AudioError, read_audio, write_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, read_kv, write_kv

logger = logging.getLogger(__name__)

# Files carried over unchanged (when present) after the audio has been dumped.
PASSTHROUGH_FILES = ("utt2spk", "spk2utt", "text_spk1", "text_spk2", "text_spk3", "utt2category")


def audio_scp_names(data_dir: PathLike) -> List[str]:
    """The audio lists of a separation data dir: the mixture, references and noise."""
    data_dir = Path(data_dir)
    names = ["wav.scp"] + sorted(
        p.name for p in data_dir.glob("*.scp")
        if p.name.startswith(("spk", "noise", "dereverb")) and p.name != "spk2utt"
    )
    return [n for n in names if (data_dir / n).is_file()]


def load_scp_audio(value: str, where: str) -> Tuple[np.ndarray, int]:
    """Load one wav.scp value: a file path or a Kaldi pipe command ending in '|'."""
    if value.endswith("|"):
        try:
            fs, data = kaldiio.load_mat(value)
        except Exception as exc:
            raise AudioError(f"{where}: command failed: {value} ({exc})") from exc
        data = np.asarray(data)
        if np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float64) / 32768.0
        if data.shape[0] == 0 or not np.all(np.isfinite(data)):
            raise AudioError(f"{where}: command produced empty or non-finite audio: {value}")
        return data, fs
    try:
        return read_audio(value, dtype="float64")
    except AudioError as exc:
        raise AudioError(f"{where}: {exc}") from exc


def to_mono(data: np.ndarray, where: str) -> np.ndarray:
    if data.ndim == 1:
        return data
    logger.info("%s: downmixing %d channels to mono", where, data.shape[1])
    return data.mean(axis=1)


def resample_mono(data: np.ndarray, fs_in: int, fs_out: int, where: str) -> np.ndarray:
    """Downmix and resample (soxr) with a log line each; the level is left alone."""
    data = to_mono(data, where)
    if fs_in != fs_out:
        logger.info("%s: resampling %d Hz to %d Hz", where, fs_in, fs_out)
        data = librosa.resample(data, orig_sr=fs_in, target_sr=fs_out, res_type="soxr_hq")
    return data


def load_mono(value: str, where: str, fs: int) -> np.ndarray:
    """A wav.scp value as mono float32 at `fs`, unclipped (separator outputs may exceed 1)."""
    data, fs_in = load_scp_audio(value, where)
    return resample_mono(data, fs_in, fs, where).astype(np.float32)


def convert_audio(data: np.ndarray, fs_in: int, fs_out: int, where: str) -> np.ndarray:
    """For 16-bit dumping: resampled mono, clipped to [-1, 1] with a warning."""
    data = resample_mono(data, fs_in, fs_out, where)
    peak = float(np.max(np.abs(data)))
    if peak > 1.0:
        logger.warning("%s: peak %.3f after resampling, clipped to [-1, 1]", where, peak)
        data = np.clip(data, -1.0, 1.0)
    return data


def is_unchanged_pcm16(path: str, fs_out: int) -> bool:
    """Mono 16-bit input at the target rate is copied sample-exactly (int16 in, int16 out)."""
    if path.endswith("|"):
        return False
    try:
        info = sf.info(path)
    except Exception:  # unreadable: the generic path reports it with the file name
        return False
    return info.samplerate == fs_out and info.channels == 1 and info.subtype == "PCM_16"


def format_shard(
    src_dir: PathLike,
    out_dir: PathLike,
    fs: int,
    audio_format: str = "wav",
    key_file: Optional[PathLike] = None,
    shard_name: str = "1",
) -> None:
    """Dump the audio of the keys in `key_file` (all keys if None) into out_dir/data/.

    Each scp of the shard is written to out_dir/shards/<scp>.<shard_name>; finished audio
    files are skipped on rerun, so a killed job resumes where it stopped.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if audio_format not in ("wav", "flac"):
        raise ValueError(f"audio_format must be wav or flac, not {audio_format!r}")
    keys = None if key_file is None else list(read_kv(key_file, allow_empty_value=True))
    for scp_name in audio_scp_names(src_dir):
        entries = read_kv(src_dir / scp_name)
        selected = entries if keys is None else {k: entries[k] for k in keys if k in entries}
        stem = scp_name[: -len(".scp")]
        audio_dir = out_dir / "data" / stem
        audio_dir.mkdir(parents=True, exist_ok=True)
        dumped: Dict[str, str] = {}
        for key, value in selected.items():
            where = f"{src_dir / scp_name} (key {key})"
            target = (audio_dir / f"{key}.{audio_format}").resolve()
            if not target.is_file():
                dump_one(value, target, fs, where)
            dumped[key] = str(target)
        write_kv(out_dir / "shards" / f"{scp_name}.{shard_name}", dumped)


def dump_one(value: str, target: Path, fs: int, where: str) -> None:
    if is_unchanged_pcm16(value, fs) and target.suffix == ".wav":
        data, _ = sf.read(value, dtype="int16")
        if data.shape[0] == 0:
            raise AudioError(f"{where}: {value}: audio is empty (0 samples)")
        write_audio(target, data, fs)
        return
    data, fs_in = load_scp_audio(value, where)
    write_audio(target, convert_audio(data, fs_in, fs, where), fs)


def merge_formatted_dir(src_dir: PathLike, out_dir: PathLike, num_shards: int) -> None:
    """Join the shard scps, add utt2num_samples, copy text-like files, then validate."""
    from sepalm_espnet.data.data_dir import validate_data_dir

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    for scp_name in audio_scp_names(src_dir):
        merged: Dict[str, str] = {}
        for shard in range(1, num_shards + 1):
            merged.update(read_kv(out_dir / "shards" / f"{scp_name}.{shard}", allow_empty_value=True))
        expected = set(read_kv(src_dir / scp_name))
        if set(merged) != expected:
            missing = sorted(expected - set(merged))[:5]
            raise DataDirError(f"{out_dir}: {scp_name} shards miss keys, e.g. {missing}")
        write_kv(out_dir / scp_name, merged)
    write_kv(out_dir / "utt2num_samples", num_samples(read_kv(out_dir / "wav.scp").items()))
    for name in PASSTHROUGH_FILES:
        if (src_dir / name).is_file():
            shutil.copyfile(src_dir / name, out_dir / name)
    shutil.rmtree(out_dir / "shards")
    validate_data_dir(out_dir)


def num_samples(entries: Iterable[Tuple[str, str]]) -> Dict[str, str]:
    return {key: str(sf.info(path).frames) for key, path in entries}
