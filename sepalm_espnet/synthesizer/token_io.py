"""Codec token arks: (Q, T') codebook indices per key, kept as int16 in Kaldi ark/scp files.

On disk an entry is a time-first (T', Q) int16 array (kaldiio's NPY record), so ESPnet's
`kaldi_ark` data type and its collate pad along time and report T' as the length; the
functions here take and return the codec's (Q, T') layout. int16 holds every index of a
codebook of up to 32768 entries (DAC 16 kHz has 1024) at a quarter of int64's size.

The ark and then the scp are written under temporary names and moved into place only when
every entry was written, so a killed job never leaves an scp that looks finished.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Mapping, Optional

import kaldiio
import numpy as np

from sepalm_espnet.data.format import load_mono
from sepalm_espnet.data.kaldi_dir import (
    DataDirError,
    PathLike,
    atomic_path,
    read_key_file,
    read_kv,
    select_entries,
    write_kv,
)

if TYPE_CHECKING:
    from sepalm_espnet.synthesizer.codec_base import TokenCodec

logger = logging.getLogger(__name__)

MAX_CODEBOOK_SIZE = 32768  # int16 holds indices 0 .. 32767
# Utterances loaded at once are sorted by length before batching; this many batches' worth.
SORT_WINDOW_BATCHES = 32


class TokenIOError(DataDirError):
    """Tokens do not fit the ark format, or a token scp is inconsistent."""


def check_codebook_size(codebook_size: int) -> None:
    if not 1 <= codebook_size <= MAX_CODEBOOK_SIZE:
        raise TokenIOError(f"codebook_size {codebook_size} does not fit int16 tokens (max {MAX_CODEBOOK_SIZE})")


def to_time_first_int16(key: str, tokens, codebook_size: int) -> np.ndarray:
    array = np.asarray(tokens)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise TokenIOError(f"'{key}': tokens must be a (Q, T') integer array, got {array.shape} {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= codebook_size):
        raise TokenIOError(f"'{key}': token values must be in [0, {codebook_size}), got [{array.min()}, {array.max()}]")
    return np.ascontiguousarray(array.T.astype(np.int16))


@contextlib.contextmanager
def token_writer(ark_path: PathLike, scp_path: PathLike, codebook_size: int) -> Iterator[Callable[[str, np.ndarray], None]]:
    """Yield `write(key, tokens)`; the ark, then the scp, appear only if the block succeeds.

    The scp names the ark by its absolute path, as the audio scps of this toolkit do.
    """
    check_codebook_size(codebook_size)
    ark_path = Path(ark_path).resolve()
    offsets: Dict[str, int] = {}
    with atomic_path(ark_path, suffix=".ark") as tmp_path, open(tmp_path, "wb") as ark:

        def write(key: str, tokens: np.ndarray) -> None:
            if key in offsets:
                raise TokenIOError(f"{ark_path}: key '{key}' written twice")
            array = to_time_first_int16(key, tokens, codebook_size)
            start = ark.tell()
            kaldiio.save_ark(ark, {key: array}, write_function="numpy")
            offsets[key] = start + len(f"{key} ".encode("utf-8"))

        yield write
    write_kv(scp_path, {key: f"{ark_path}:{offset}" for key, offset in offsets.items()})


def write_tokens(ark_path: PathLike, scp_path: PathLike, tokens: Mapping[str, np.ndarray], codebook_size: int) -> None:
    with token_writer(ark_path, scp_path, codebook_size) as write:
        for key, value in tokens.items():
            write(key, value)


class TokenReader(Mapping[str, np.ndarray]):
    """A token scp as a lazy mapping: key -> (Q, T') int64 array (ready for embeddings)."""

    def __init__(self, scp_path: PathLike):
        self.scp_path = Path(scp_path)
        read_kv(self.scp_path)  # names the line of a malformed entry before kaldiio would
        self._entries = kaldiio.load_scp(str(self.scp_path))

    def __getitem__(self, key: str) -> np.ndarray:
        array = self._entries[key]
        if not isinstance(array, np.ndarray) or array.dtype != np.int16 or array.ndim != 2:
            raise TokenIOError(f"{self.scp_path}: '{key}' is not an int16 token matrix")
        return array.T.astype(np.int64)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def tokenize_wav_scp(
    codec: "TokenCodec",
    wav_scp: PathLike,
    ark_path: PathLike,
    scp_path: PathLike,
    key_file: Optional[PathLike] = None,
    batch_size: int = 8,
) -> None:
    """Encode every wav.scp entry (or those in `key_file`) into a token ark + scp.

    Audio is downmixed and resampled to the codec rate (soxr) when needed; utterances are
    batched with others of similar length and each keeps ceil(len / hop) frames.
    """
    entries = select_entries(wav_scp, read_key_file(key_file))
    keys = list(entries)
    window = batch_size * SORT_WINDOW_BATCHES
    with token_writer(ark_path, scp_path, codec.codebook_size) as write:
        for start in range(0, len(keys), window):
            waves: Dict[str, np.ndarray] = {}
            for key in keys[start : start + window]:
                waves[key] = load_mono(entries[key], f"{wav_scp} (key {key})", codec.sample_rate)
            by_length: List[str] = sorted(waves, key=lambda k: len(waves[k]))
            for first in range(0, len(by_length), batch_size):
                batch = by_length[first : first + batch_size]
                for key, tokens in zip(batch, codec.encode_batch([waves[k] for k in batch])):
                    write(key, tokens.numpy())
            logger.info("tokenized %d of %d utterances", min(start + window, len(keys)), len(keys))
