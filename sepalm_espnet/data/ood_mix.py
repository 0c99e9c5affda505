"""Out-of-domain test sets (paper §4.4): WSJ0-2mix test speech plus MUSAN or DEMAND noise.

The paper gives only "WSJ0-2mix tt speech, MUSAN / DEMAND noise, SNR ~ U[-6, +3] dB", so the
rest is ours and fixed here: the SNR is that of (s1 + s2) against the noise; the noise is a
random file at a random offset, looped when shorter than the speech; every draw comes from a
generator seeded by (seed, mixture id), so a set is the same whatever --nj and order.
The written files satisfy mix == s1 + s2 + noise exactly: the three signals share one scale
(no clipping), are rounded to int16, and the mixture is their integer sum.
"""
from __future__ import annotations

import csv
import functools
import logging
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from sepalm_espnet.data.audio import AudioError, read_audio, write_audio
from sepalm_espnet.data.kaldi_dir import PathLike, atomic_path
from sepalm_espnet.data.libri2mix_wham import (
    CORPUS_AUDIO_DIR,
    CorpusError,
    corpus_root,
    is_finished,
    read_mixture_csv,
    write_separation_dir,
    wsj0_mixture_texts,
)

logger = logging.getLogger(__name__)

FS = 16000
SNR_RANGE_DB = (-6.0, 3.0)
# Peak of the loudest written signal, LibriMix's headroom.
MAX_AMPLITUDE = 0.9
INT16_SCALE = 32768.0
NOISE_CORPORA = {"musan": "MUSAN", "demand": "DEMAND"}
MUSAN_NOISE_FOLDERS = ("noise/free-sound", "noise/sound-bible")
AUDIO_FOLDERS = ("mix_both", "s1", "s2", "noise")
METADATA_COLUMNS = (
    "mixture_ID", "mixture_path", "source_1_path", "source_2_path", "noise_path", "length",
    "noise_source_path", "noise_offset", "snr_db", "scale",
)


@dataclass(frozen=True)
class NoiseFile:
    path: str
    frames: int


@dataclass(frozen=True)
class MixingPlan:
    """Everything a worker needs besides the mixture id: picklable, shared by all jobs."""

    noises: Tuple[NoiseFile, ...]
    seed: int
    audio_dir: Path


def ood_set_name(noise_corpus: str) -> str:
    return f"ood_{noise_corpus}_test"


def list_noise_paths(noise_corpus: str, noise_root: Optional[PathLike]) -> List[Path]:
    """MUSAN: noise/{free-sound,sound-bible}/*.wav; DEMAND: <ENV>/ch01.wav of the 16 kHz zips."""
    variable = NOISE_CORPORA[noise_corpus]
    if noise_corpus == "musan":
        root = corpus_root(variable, noise_root, required=MUSAN_NOISE_FOLDERS)
        paths = sorted(p for folder in MUSAN_NOISE_FOLDERS for p in (root / folder).glob("*.wav"))
        where = f"{variable}={noise_root}: no .wav files in {' or '.join(MUSAN_NOISE_FOLDERS)}"
    else:
        root = corpus_root(variable, noise_root)
        paths = sorted(root.glob("*/ch01.wav"))
        where = f"{variable}={noise_root}: no <ENV>/ch01.wav found (unzip the DEMAND *_16k.zip files here)"
    if not paths:
        raise CorpusError(where)
    return paths


def noise_file_info(path: Path) -> NoiseFile:
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for bad files
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    if info.samplerate != FS:
        raise AudioError(f"{path}: sample rate {info.samplerate}, expected {FS} (use the 16 kHz version)")
    if info.frames == 0:
        raise AudioError(f"{path}: audio is empty (0 samples)")
    return NoiseFile(str(path), info.frames)


def list_speech_pairs(wsj0_2mix_root: Optional[PathLike]) -> Dict[str, Tuple[Path, Path]]:
    tt = CORPUS_AUDIO_DIR / "tt"
    root = corpus_root("WSJ0_2MIX", wsj0_2mix_root, required=[tt / "s1", tt / "s2"])
    pairs = {}
    for s1 in sorted((root / tt / "s1").glob("*.wav")):
        s2 = root / tt / "s2" / s1.name
        if not s2.is_file():
            raise CorpusError(f"WSJ0_2MIX={wsj0_2mix_root}: audio file not found: {s2}")
        pairs[s1.stem] = (s1, s2)
    if not pairs:
        raise CorpusError(f"WSJ0_2MIX={wsj0_2mix_root}: no .wav files in {root / tt / 's1'}")
    return pairs


def read_looped_segment(noise: NoiseFile, offset: int, length: int) -> np.ndarray:
    """`length` samples from `offset` on, wrapping to the start; reads only what is needed."""
    try:
        f = sf.SoundFile(noise.path)
    except Exception as exc:  # soundfile raises several types for bad files
        raise AudioError(f"{noise.path}: cannot read audio ({exc})") from exc
    chunks = []
    with f:
        position, remaining = offset, length
        while remaining > 0:
            f.seek(position)
            chunk = f.read(min(remaining, noise.frames - position), dtype="float64", always_2d=True)
            if len(chunk) == 0:
                raise AudioError(f"{noise.path}: read no samples at offset {position}")
            chunks.append(chunk[:, 0])
            remaining -= len(chunk)
            position = 0
    return np.concatenate(chunks)


def read_speech(path: Path) -> np.ndarray:
    data, fs = read_audio(path, dtype="float64")
    if fs != FS or data.ndim != 1:
        raise AudioError(f"{path}: expected mono {FS} Hz audio, got {fs} Hz, shape {data.shape}")
    return data


def power(signal: np.ndarray) -> float:
    return float(np.mean(signal**2))


def make_mixture(plan: MixingPlan, key: str, s1_path: Path, s2_path: Path) -> Dict[str, str]:
    """Write one mixture and its parts; return its metadata row."""
    rng = np.random.default_rng([plan.seed, zlib.crc32(key.encode())])
    noise_file = plan.noises[rng.integers(len(plan.noises))]
    offset = int(rng.integers(noise_file.frames))
    snr_db = float(rng.uniform(*SNR_RANGE_DB))

    s1, s2 = read_speech(s1_path), read_speech(s2_path)
    length = min(len(s1), len(s2))
    s1, s2 = s1[:length], s2[:length]
    noise = read_looped_segment(noise_file, offset, length)
    speech_power, noise_power = power(s1 + s2), power(noise)
    if speech_power == 0:
        raise AudioError(f"{s1_path}, {s2_path}: speech is silent")
    if noise_power == 0:
        raise AudioError(f"{noise_file.path}: noise is silent at offset {offset} for {length} samples")
    noise = noise * np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))

    peak = max(np.max(np.abs(x)) for x in (s1, s2, noise, s1 + s2 + noise))
    scale = min(1.0, MAX_AMPLITUDE / peak)
    # |x| <= 0.9 after scaling, so each rounded part and their integer sum fit in int16.
    parts = [np.round(x * scale * INT16_SCALE).astype(np.int32) for x in (s1, s2, noise)]
    signals = dict(zip(AUDIO_FOLDERS, [sum(parts)] + parts))
    paths = {folder: plan.audio_dir / folder / f"{key}.wav" for folder in AUDIO_FOLDERS}
    for folder, signal in signals.items():
        write_audio(paths[folder], signal.astype(np.int16), FS)
    return {
        "mixture_ID": key,
        "mixture_path": str(paths["mix_both"]),
        "source_1_path": str(paths["s1"]),
        "source_2_path": str(paths["s2"]),
        "noise_path": str(paths["noise"]),
        "length": str(length),
        "noise_source_path": noise_file.path,
        "noise_offset": str(offset),
        "snr_db": f"{snr_db:.6f}",
        "scale": f"{scale:.6f}",
    }


def _make_mixture_job(plan: MixingPlan, job: Tuple[str, Path, Path]) -> Dict[str, str]:
    return make_mixture(plan, *job)


def write_metadata(path: Path, rows: Sequence[Dict[str, str]]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


def make_ood_set(
    noise_corpus: str,
    wsj0_2mix_root: Optional[PathLike],
    noise_root: Optional[PathLike],
    datadir: PathLike,
    audio_root: PathLike,
    seed: int = 0,
    nj: int = 1,
    wsj0_text_dir: Optional[PathLike] = None,
) -> Path:
    """Generate <audio_root>/ood_<noise>_test/ (wavs + metadata.csv) and data/ood_<noise>_test."""
    if noise_corpus not in NOISE_CORPORA:
        raise CorpusError(f"unknown noise corpus '{noise_corpus}'; choose from {list(NOISE_CORPORA)}")
    if seed < 0 or nj < 1:
        raise ValueError(f"need seed >= 0 and nj >= 1, got seed={seed}, nj={nj}")
    name = ood_set_name(noise_corpus)
    out_dir = Path(datadir) / name
    if is_finished(out_dir):
        return out_dir
    speech = list_speech_pairs(wsj0_2mix_root)
    noises = tuple(noise_file_info(p) for p in list_noise_paths(noise_corpus, noise_root))
    audio_dir = Path(audio_root).absolute() / name
    plan = MixingPlan(noises, seed, audio_dir)
    jobs = [(key, s1, s2) for key, (s1, s2) in speech.items()]
    logger.info("%s: mixing %d utterances with %d noise files (seed %d)", name, len(jobs), len(noises), seed)
    make = functools.partial(_make_mixture_job, plan)
    if nj == 1:
        rows = list(map(make, jobs))
    else:
        with ProcessPoolExecutor(nj) as pool:
            rows = list(pool.map(make, jobs, chunksize=max(1, len(jobs) // (4 * nj))))
    metadata = audio_dir / "metadata.csv"
    write_metadata(metadata, rows)
    entries = read_mixture_csv(metadata, audio_dir)
    texts = None
    if wsj0_text_dir:
        texts = wsj0_mixture_texts((e.key for e in entries), wsj0_text_dir, str(metadata))
    else:
        logger.info("%s: no --wsj0_text_dir given, writing no text_spk1/text_spk2", out_dir)
    return write_separation_dir(out_dir, entries, texts)
