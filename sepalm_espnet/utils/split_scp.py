"""Split a key file into contiguous, balanced pieces: one piece per parallel job.

Pieces keep the input's line order, so the pieces of a sorted file are sorted and
concatenating them gives back the input; their line counts differ by at most one.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path


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
    if not in_path.is_file():
        raise DataDirError(f"{in_path}: file not found")
    lines = in_path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise DataDirError(f"{in_path}:{lineno}: empty line")
    if len(out_paths) > len(lines):
        raise DataDirError(f"{in_path}: cannot split {len(lines)} lines into "
                           f"{len(out_paths)} non-empty pieces")
    for out_path, piece in zip(out_paths, split_lines(lines, len(out_paths))):
        with atomic_path(out_path) as tmp:
            Path(tmp).write_text("".join(line + "\n" for line in piece), encoding="utf-8")
