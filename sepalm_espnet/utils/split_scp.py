"""Split a key file into contiguous, balanced pieces: one piece per parallel job.

Pieces keep the input's line order, so the pieces of a sorted file are sorted and
concatenating them gives back the input; their line counts differ by at most one.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_lines


def split_lines(lines: Sequence[str], num_splits: int) -> List[List[str]]:
    """The first len(lines) % num_splits pieces take one extra line."""
    if num_splits < 1:
        raise ValueError(f"need at least one split, got {num_splits}")
    size, extra = divmod(len(lines), num_splits)
    pieces, start = [], 0
    for index in range(num_splits):
        end = start + size + (1 if index < extra else 0)
        pieces.append(list(lines[start:end]))
        start = end
    return pieces


def split_scp(in_path: PathLike, out_paths: Sequence[PathLike]) -> None:
    """Write the lines of `in_path` across `out_paths`; no piece may be empty."""
    in_path = Path(in_path)
    lines = read_lines(in_path)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise DataDirError(f"{in_path}:{lineno}: empty line")
    if not lines:  # a recipe asking for min(nj, lines) pieces would otherwise get a usage text
        raise DataDirError(f"{in_path}: no entries to split")
    if not out_paths:
        raise DataDirError(f"{in_path}: no output files to split into")
    if len(out_paths) > len(lines):
        raise DataDirError(f"{in_path}: cannot split {len(lines)} lines into "
                           f"{len(out_paths)} non-empty pieces")
    for out_path, piece in zip(out_paths, split_lines(lines, len(out_paths))):
        with atomic_path(out_path) as tmp:
            Path(tmp).write_text("".join(line + "\n" for line in piece), encoding="utf-8")
