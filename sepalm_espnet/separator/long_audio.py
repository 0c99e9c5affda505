"""Separate recordings of any length with bounded memory.

The separator sees one segment at a time (`SegmentOptions`: 8 s every 4 s). A separator's speaker order
is arbitrary per call, so each new segment is reordered to best match, on the overlap, what was
already produced, and the two are crossfaded there. Input is read and output written block by
block: a 10-minute file needs about as much memory as one segment.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import soxr
import torch

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_kv, write_kv

SeparateFn = Callable[[torch.Tensor], List[torch.Tensor]]


class SampleRateError(ValueError):
    """The audio's sample rate differs from the separator's and resampling was not allowed."""


@dataclass(frozen=True)
class SegmentOptions:
    """How input longer than one segment is cut: overlapping segments, so each new one's speaker
    order can be matched to the output so far on the overlap."""

    segment_sec: float = field(default=8.0, metadata={"help": "separator input length per call, in seconds"})
    hop_sec: float = field(default=4.0, metadata={"help": "shift between segments, in seconds (< segment_sec)"})

    def __post_init__(self):
        if not 0 < self.hop_sec < self.segment_sec:
            raise ValueError(
                f"need 0 < hop_sec < segment_sec so segments overlap (speaker order is matched "
                f"on the overlap), got hop_sec={self.hop_sec}, segment_sec={self.segment_sec}"
            )


def best_permutation(reference: np.ndarray, estimate: np.ndarray) -> Tuple[int, ...]:
    """Order of `estimate` rows (num_spk, n) maximizing summed normalized correlation with `reference`."""
    def unit(rows: np.ndarray) -> np.ndarray:
        rows = rows.astype(np.float64)
        return rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-12)

    similarity = unit(reference) @ unit(estimate).T
    speakers = range(len(reference))
    # Ties (e.g. silence) keep the identity order: max() returns the first best.
    return max(
        itertools.permutations(speakers),
        key=lambda perm: sum(similarity[k, perm[k]] for k in speakers),
    )


def crossfade_weights(length: int) -> np.ndarray:
    """Raised-cosine ramp from ~0 to ~1; the outgoing segment gets 1 - ramp."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)).astype(np.float32)


class _Stitcher:
    """Holds the not-yet-final tail of the output and merges each new segment into it."""

    def __init__(self) -> None:
        self.pending: Optional[np.ndarray] = None
        self.pending_start = 0

    def add(self, start: int, estimate: np.ndarray) -> Iterator[np.ndarray]:
        """Merge `estimate` (num_spk, n) covering [start, start + n); yield what became final."""
        if self.pending is None:
            self.pending, self.pending_start = estimate, start
            return
        final = start - self.pending_start
        if final > 0:
            yield self.pending[:, :final]
        previous = self.pending[:, final:]
        overlap = previous.shape[1]
        estimate = estimate[list(best_permutation(previous, estimate[:, :overlap]))]
        ramp = crossfade_weights(overlap)
        blended = previous * (1.0 - ramp) + estimate[:, :overlap] * ramp
        self.pending = np.concatenate([blended, estimate[:, overlap:]], axis=1)
        self.pending_start = start

    def finish(self) -> Iterator[np.ndarray]:
        if self.pending is not None:
            yield self.pending


def _with_last_flag(blocks: Iterable[np.ndarray]) -> Iterator[Tuple[np.ndarray, bool]]:
    iterator = iter(blocks)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following is None
        current = following


def mono_blocks(
    blocks: Iterable[np.ndarray],
    channels: int,
    fs: int,
    target_fs: int,
    resample: bool,
    name: str,
) -> Iterator[np.ndarray]:
    """Blocks (n,) or (n, channels) at `fs` -> mono float32 blocks at `target_fs`.

    A wrong rate is never separated silently: it is refused, or resampled with a log line.
    """
    resampler = None
    if fs != target_fs:
        if not resample:
            raise SampleRateError(
                f"{name}: audio is {fs} Hz but the separator expects {target_fs} Hz; "
                "resample the data (recipe stage 2) or allow resampling (--resample true)"
            )
        logging.info("%s: resampling %d Hz -> %d Hz (soxr)", name, fs, target_fs)
        resampler = soxr.ResampleStream(fs, target_fs, 1, dtype="float32")
    if channels > 1:
        logging.info("%s: downmixing %d channels to mono", name, channels)
    for block, is_last in _with_last_flag(blocks):
        if not np.all(np.isfinite(block)):
            raise AudioError(f"{name}: audio contains NaN or infinite samples")
        mono = (block.mean(axis=1) if block.ndim == 2 else block).astype(np.float32)
        yield resampler.resample_chunk(mono, last=is_last) if resampler else mono


class LongAudioSeparator:
    """Segment-wise separation of arbitrarily long input with speaker-order stitching.

    `separate` maps a (1, T) mixture to a list of num_spk (1, T) estimates, e.g.
    `registry.enh_model_separate_fn(model)`. Input no longer than one segment is separated in a
    single call, so the result equals plain full-input inference.
    """

    def __init__(
        self,
        separate: SeparateFn,
        num_spk: int,
        fs: int,
        options: SegmentOptions = SegmentOptions(),
        min_samples: int = 1,
    ):
        self.separate = separate
        self.num_spk = num_spk
        self.fs = fs
        self.options = options
        self.segment = round(options.segment_sec * fs)
        self.hop = round(options.hop_sec * fs)
        self.min_samples = min_samples

    def separate_segment(self, samples: np.ndarray) -> np.ndarray:
        """One separator call: (n,) -> (num_spk, n); silence gives zeros without a call."""
        length = len(samples)
        if not np.any(samples):
            return np.zeros((self.num_spk, length), dtype=np.float32)
        padded = np.pad(samples, (0, max(0, self.min_samples - length)))
        estimates = self.separate(torch.from_numpy(padded).unsqueeze(0))
        stacked = torch.cat([est.reshape(1, -1) for est in estimates]).cpu().numpy()
        if stacked.shape != (self.num_spk, len(padded)):
            raise ValueError(
                f"separator returned shape {tuple(stacked.shape)} for input of {len(padded)} "
                f"samples; expected ({self.num_spk}, {len(padded)})"
            )
        if not np.all(np.isfinite(stacked)):
            raise FloatingPointError("separator returned NaN or infinite samples")
        return stacked[:, :length].astype(np.float32, copy=False)

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Mono float32 blocks at `fs` in; finished (num_spk, n) output blocks out, in order."""
        stitcher = _Stitcher()
        buffer = np.zeros(0, dtype=np.float32)
        buffer_start = 0  # absolute sample index of buffer[0]
        next_start = 0
        last_end = 0
        for block in blocks:
            buffer = np.concatenate([buffer, block])
            while buffer_start + len(buffer) >= next_start + self.segment:
                offset = next_start - buffer_start
                segment = buffer[offset : offset + self.segment]
                yield from stitcher.add(next_start, self.separate_segment(segment))
                # Keep from this segment's start: the last segment may begin anywhere after it.
                buffer, buffer_start = buffer[offset:], next_start
                last_end = next_start + self.segment
                next_start += self.hop
        total = buffer_start + len(buffer)
        if last_end == 0 and total > 0:
            yield from stitcher.add(0, self.separate_segment(buffer))
        elif last_end < total:
            # A full-length final segment aligned to the end: no zero padding in the model input.
            final_start = total - self.segment
            yield from stitcher.add(final_start, self.separate_segment(buffer[final_start - buffer_start :]))
        yield from stitcher.finish()

    def separate_array(self, mixture: np.ndarray, fs: int, resample: bool = False) -> np.ndarray:
        """(T,) or (T, channels) at `fs` -> (num_spk, T') at the separator's rate."""
        mixture = np.asarray(mixture)
        if mixture.ndim not in (1, 2) or (mixture.ndim == 2 and mixture.shape[1] > mixture.shape[0]):
            raise AudioError(f"expected (samples, channels), got shape {mixture.shape}")
        if mixture.shape[0] == 0:
            raise AudioError("audio is empty (0 samples)")
        channels = mixture.shape[1] if mixture.ndim == 2 else 1
        blocks = (mixture[i : i + self.hop] for i in range(0, len(mixture), self.hop))
        mono = mono_blocks(blocks, channels, fs, self.fs, resample, "input array")
        return np.concatenate(list(self.stream(mono)), axis=1)

    def separate_file(self, path: PathLike, output_paths: Sequence[PathLike], resample: bool = False) -> None:
        """Read `path` block by block, write one float WAV per speaker atomically."""
        if len(output_paths) != self.num_spk:
            raise ValueError(f"need {self.num_spk} output paths, got {len(output_paths)}")
        try:
            source = sf.SoundFile(str(path))
        except Exception as exc:  # soundfile raises several types for bad files
            raise AudioError(f"{path}: cannot read audio ({exc})") from exc
        with source, contextlib.ExitStack() as outputs:
            if source.frames == 0:
                raise AudioError(f"{path}: audio is empty (0 samples)")
            temporaries = [outputs.enter_context(atomic_path(p, suffix=".wav")) for p in output_paths]
            writers = [
                outputs.enter_context(
                    sf.SoundFile(str(t), "w", samplerate=self.fs, channels=1, subtype="FLOAT", format="WAV")
                )
                for t in temporaries
            ]
            blocks = source.blocks(blocksize=self.hop, dtype="float32")
            mono = mono_blocks(blocks, source.channels, source.samplerate, self.fs, resample, str(path))
            for finished in self.stream(mono):
                for writer, samples in zip(writers, finished):
                    writer.write(samples)


def separate_scp(
    separator: LongAudioSeparator,
    wav_scp: PathLike,
    output_dir: PathLike,
    key_file: Optional[PathLike] = None,
    resample: bool = False,
    after_each: Optional[Callable[[str], None]] = None,
) -> Dict[str, List[Path]]:
    """Separate every wav.scp entry (or those listed in `key_file`, for JOB splits).

    Writes <output_dir>/wavs/<key>_spk{n}.wav and sorted <output_dir>/spk{n}.scp; returns the
    output paths per key. `after_each(key)` runs after each entry (e.g. to collect its statuses).
    """
    entries = read_kv(wav_scp)
    keys = list(read_kv(key_file, allow_empty_value=True)) if key_file else list(entries)
    missing = [key for key in keys if key not in entries]
    if missing:
        raise DataDirError(f"{key_file}: {len(missing)} keys not in {wav_scp}, e.g. '{missing[0]}'")
    output_dir = Path(output_dir)
    outputs: Dict[str, List[Path]] = {}
    for key in sorted(keys):
        audio_path = entries[key]
        if audio_path.endswith("|"):
            raise DataDirError(f"{wav_scp}: '{key}': piped commands are not supported; dump audio files first")
        outputs[key] = [output_dir / "wavs" / f"{key}_spk{n + 1}.wav" for n in range(separator.num_spk)]
        logging.info("separating %s", key)
        separator.separate_file(audio_path, outputs[key], resample=resample)
        if after_each is not None:
            after_each(key)
    for n in range(separator.num_spk):
        write_kv(output_dir / f"spk{n + 1}.scp", {key: str(paths[n]) for key, paths in outputs.items()})
    return outputs
