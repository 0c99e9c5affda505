"""Debian TTS voices as the speakers of the offline toy corpus.

flite's CMU voices and espeak-ng's accents and variants give distinct speaker identities that
install from Debian, run offline and are bit-exact from run to run, so a corpus built from them
is reproducible from a seed. festival is left out: its installed voices (kal diphone, slt HTS)
are the same speakers as flite's kal and slt at about 50 times the cost.

Train and evaluation voices are disjoint, so dev/test measure separation of unseen speakers.
"""
from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np
import soxr

from sepalm_espnet.data.audio import read_audio, write_audio
from sepalm_espnet.data.kaldi_dir import PathLike

DEBIAN_PACKAGES = {"flite": "flite", "espeak-ng": "espeak-ng"}
# Leading/trailing 20 ms frames this far below the loudest frame count as silence and are cut.
TRIM_TOP_DB = 40.0
TRIM_FRAME_S = 0.02


class TTSError(RuntimeError):
    """A TTS engine is missing or failed; the message names the Debian package or the voice."""


@dataclass(frozen=True)
class Voice:
    engine: str  # a key of DEBIAN_PACKAGES
    name: str  # the engine's voice name, e.g. "awb" or "en-us+m3"

    def __post_init__(self) -> None:
        if self.engine not in DEBIAN_PACKAGES:
            raise TTSError(f"unknown TTS engine {self.engine!r} (known: {sorted(DEBIAN_PACKAGES)})")

    @property
    def speaker_id(self) -> str:
        """Kaldi-safe and free of '_', so LibriMix-style `<utt1>_<utt2>` ids split back."""
        short = {"espeak-ng": "espeak"}.get(self.engine, self.engine)
        return f"{short}-{self.name.replace('+', '-')}"

    def command(self, wav_path: Path) -> Tuple[List[str], bool]:
        """The engine's command line, and whether it reads the text from stdin."""
        if self.engine == "flite":
            # flite reads a file or -t TEXT; -t with the text as its own argv entry is safe.
            return ["flite", "-voice", self.name, "-o", str(wav_path), "-t"], False
        return ["espeak-ng", "-v", self.name, "-w", str(wav_path), "--stdin"], True


TRAIN_VOICES: Tuple[Voice, ...] = (
    Voice("flite", "kal16"),
    Voice("flite", "awb"),
    Voice("espeak-ng", "en-us+m3"),
    Voice("espeak-ng", "en-gb+f2"),
    Voice("espeak-ng", "en+m7"),
    Voice("espeak-ng", "en-us+f4"),
    Voice("espeak-ng", "en-gb-scotland+m1"),
    Voice("espeak-ng", "en-029+f3"),
)
EVAL_VOICES: Tuple[Voice, ...] = (
    Voice("flite", "rms"),
    Voice("flite", "slt"),
    Voice("espeak-ng", "en-gb-x-rp+m5"),
    Voice("espeak-ng", "en-us-nyc+f5"),
)


def require_engine(engine: str) -> None:
    if shutil.which(engine) is None:
        package = DEBIAN_PACKAGES[engine]
        raise TTSError(f"TTS engine '{engine}' not found on PATH: install the Debian package "
                       f"'{package}' (apt-get install {package})")


@functools.lru_cache(maxsize=None)
def engine_version(engine: str) -> str:
    """Part of the cache key: an upgraded engine may speak differently."""
    require_engine(engine)
    proc = subprocess.run([engine, "--version"], capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[-1].strip() if lines else "unknown"


def synthesize(voice: Voice, text: str, fs: int) -> np.ndarray:
    """float32 speech at `fs` with leading and trailing silence cut.

    Silence is cut because min-mode mixing truncates both sources to the shorter one: a
    silent tail would be mixed as if it were overlapped speech.
    """
    require_engine(voice.engine)
    with tempfile.TemporaryDirectory(prefix="sepalm_tts_") as tmp:
        wav_path = Path(tmp) / "tts.wav"
        command, text_on_stdin = voice.command(wav_path)
        argv = command if text_on_stdin else command + [text]
        proc = subprocess.run(argv, input=text if text_on_stdin else None,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not wav_path.is_file():
            raise TTSError(f"{voice.speaker_id}: {' '.join(command)} failed "
                           f"(exit {proc.returncode}): {proc.stderr.strip()}")
        audio, native_fs = read_audio(wav_path)
    if native_fs != fs:
        audio = soxr.resample(audio, native_fs, fs, quality="HQ")
    speech = trim_silence(audio, fs)
    if speech.size == 0:
        raise TTSError(f"{voice.speaker_id}: no speech synthesized for {text!r}")
    return speech.astype(np.float32)


def trim_silence(audio: np.ndarray, fs: int) -> np.ndarray:
    """Cut leading/trailing frames quieter than TRIM_TOP_DB below the loudest (numpy, not
    librosa: librosa's import costs seconds in every worker process)."""
    frame = max(1, int(round(fs * TRIM_FRAME_S)))
    starts = np.arange(0, len(audio), frame)
    energy = np.add.reduceat(np.square(audio, dtype=np.float64), starts)
    if energy.max() <= 0:
        return audio[:0]
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (-TRIM_TOP_DB / 10))
    return audio[starts[loud[0]]:min(len(audio), starts[loud[-1]] + frame)]


def cache_path(voice: Voice, text: str, fs: int, cache_dir: PathLike) -> Path:
    key = "\n".join((voice.engine, engine_version(voice.engine), voice.name, str(fs), text))
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    return Path(cache_dir) / voice.speaker_id / f"{digest}.wav"


def synthesize_cached(voice: Voice, text: str, fs: int, cache_dir: PathLike) -> np.ndarray:
    """Like synthesize(), read back from a float wav cache, so reruns skip the engine.

    The cache stores float32 exactly, so a cached result equals a fresh one bit for bit.
    """
    path = cache_path(voice, text, fs, cache_dir)
    if path.is_file():
        return read_audio(path)[0]
    speech = synthesize(voice, text, fs)
    write_audio(path, speech, fs, subtype="FLOAT")
    return speech
