"""Stage 2: dump every audio scp of a data dir at one sample rate, mono, as wav or flac.

Work is sharded by key files (JOB splitting); `merge_formatted_dir` then joins the shards,
copies the text-like files and validates the result before the stage marks itself done.
"""
from __future__ import annotations

import io
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import librosa
import numpy as np
import soundfile as sf

from sepalm_espnet.data.audio import AudioError, check_complete, read_audio, write_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, check_key, read_kv, write_kv

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
    """Load one wav.scp value: a file path or a Kaldi pipe command ending in '|'.

    A pipe's bytes are decoded by soundfile, so 8/24/32-bit and float WAV (and FLAC, ...)
    keep their scale; `where` (the scp file and line) starts every error.
    """
    if value.endswith("|"):
        command = value[:-1].strip()
        try:
            result = subprocess.run(command, shell=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise AudioError(f"{where}: command failed: {value} ({exc})") from exc
        stderr = result.stderr.decode("utf-8", errors="replace").strip()
        if result.returncode != 0:
            raise AudioError(f"{where}: command failed (exit status {result.returncode}): "
                             f"{value}" + (f"\n{stderr[-2000:]}" if stderr else ""))
        try:
            data, fs = sf.read(io.BytesIO(result.stdout), dtype="float64", always_2d=False)
        except Exception as exc:  # soundfile raises several types for undecodable bytes
            raise AudioError(f"{where}: command output is not audio ({exc}): {value}"
                             + (f"\n{stderr[-2000:]}" if stderr else "")) from exc
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
        line_of = {key: lineno for lineno, key in enumerate(entries, 1)}
        selected = entries if keys is None else {k: entries[k] for k in keys if k in entries}
        stem = scp_name[: -len(".scp")]
        audio_dir = (out_dir / "data" / stem).resolve()
        audio_dir.mkdir(parents=True, exist_ok=True)
        dumped: Dict[str, str] = {}
        for key, value in selected.items():
            where = f"{src_dir / scp_name}:{line_of[key]} (key {key})"
            target = dump_path(audio_dir, key, audio_format, where)
            if not target.is_file():
                dump_one(value, target, fs, where)
            dumped[key] = str(target)
        write_kv(out_dir / "shards" / f"{scp_name}.{shard_name}", dumped)


def dump_path(audio_dir: Path, key: str, audio_format: str, where: str) -> Path:
    """The file of `key` in audio_dir; a key that is not a plain file name is refused first."""
    check_key(key, where)
    target = audio_dir / f"{key}.{audio_format}"
    if target.parent != audio_dir:  # check_key makes this impossible; never write elsewhere
        raise DataDirError(f"{where}: key '{key}' would be written outside {audio_dir}")
    return target


def dump_one(value: str, target: Path, fs: int, where: str) -> None:
    if is_unchanged_pcm16(value, fs) and target.suffix == ".wav":
        try:
            check_complete(value)
        except AudioError as exc:
            raise AudioError(f"{where}: {exc}") from exc
        data, _ = sf.read(value, dtype="int16")
        if data.shape[0] == 0:
            raise AudioError(f"{where}: {value}: audio is empty (0 samples)")
        write_audio(target, data, fs)
        return
    data, fs_in = load_scp_audio(value, where)
    write_audio(target, convert_audio(data, fs_in, fs, where), fs)


def format_job(src_dir: PathLike, output_dir: PathLike, fs: int, audio_format: str = "wav",
               key_file: Optional[PathLike] = None) -> None:
    """Stage 2's job worker: the audio of one JOB's keys dumped under output_dir/data/, with its
    tables (wav.scp, spk<n>.scp, ...) in output_dir for the recipe's job merger."""
    format_shard(src_dir, output_dir, fs, audio_format, key_file)
    shards = Path(output_dir) / "shards"
    for scp_name in audio_scp_names(src_dir):
        (shards / f"{scp_name}.1").replace(Path(output_dir) / scp_name)
    shards.rmdir()


def finish_formatted_dir(src_dir: PathLike, out_dir: PathLike) -> None:
    """After the merge: utt2num_samples and the text-like files, then validation that reads
    the dumped audio (a reference or noise of another length than its mixture, which pipes
    could not show before dumping, fails the stage here)."""
    from sepalm_espnet.data.data_dir import validate_data_dir

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    for scp_name in audio_scp_names(src_dir):
        expected, merged = set(read_kv(src_dir / scp_name)), set(read_kv(out_dir / scp_name))
        if merged != expected:
            missing = sorted(expected ^ merged)[:5]
            raise DataDirError(f"{out_dir / scp_name}: keys differ from {src_dir / scp_name}, e.g. {missing}")
    write_kv(out_dir / "utt2num_samples", num_samples(read_kv(out_dir / "wav.scp").items()))
    for name in PASSTHROUGH_FILES:
        if (src_dir / name).is_file():
            shutil.copyfile(src_dir / name, out_dir / name)
    validate_data_dir(out_dir, check_audio=True)


def merge_formatted_dir(src_dir: PathLike, out_dir: PathLike, num_shards: int) -> None:
    """Join format_shard's shard scps into out_dir, then finish it (a single-process stage 2)."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    for scp_name in audio_scp_names(src_dir):
        merged: Dict[str, str] = {}
        for shard in range(1, num_shards + 1):
            merged.update(read_kv(out_dir / "shards" / f"{scp_name}.{shard}", allow_empty_value=True))
        write_kv(out_dir / scp_name, merged)
    shutil.rmtree(out_dir / "shards")
    finish_formatted_dir(src_dir, out_dir)


def num_samples(entries: Iterable[Tuple[str, str]]) -> Dict[str, str]:
    return {key: str(sf.info(path).frames) for key, path in entries}
