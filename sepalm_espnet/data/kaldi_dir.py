"""Kaldi-style data directory files: `key value` lines, sorted by key, written atomically.

Every reader names the file and line of a malformed entry, so a user can fix the corpus
rather than debug a crash deep inside training.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]


class DataDirError(ValueError):
    """A data directory file is malformed; the message names the file and line."""


KEY_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_key(key: str, where: str, what: str = "key") -> None:
    """Keys become file names (dump/<scp>/<key>.wav): refuse any that could leave that dir.

    `where` is the `file:line` the key came from; `what` names it in the message (a speaker
    id given as a value, say).
    """
    if not KEY_PATTERN.fullmatch(key):
        raise DataDirError(f"{where}: {what} '{key}' is not a valid id: use only letters, "
                           f"digits, '_', '.' and '-', not starting with '.' or '-'")


def read_lines(path: PathLike) -> List[str]:
    """The lines of a Kaldi file, without newlines; non-UTF-8 bytes name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataDirError(f"{path}:{lineno}: not UTF-8 (byte 0x{data[exc.start]:02x} at column "
                           f"{column}); convert the file, e.g. iconv -f latin1 -t utf-8") from None
    if text.startswith("\ufeff"):  # a BOM (Windows editors) is not part of the first key
        text = text[1:]
    # Universal newlines, as open() reads them: \r\n and \r end a line too.
    return [line.rstrip("\n") for line in io.StringIO(text, newline=None)]


def read_kv(path: PathLike, allow_empty_value: bool = False,
            check_keys: bool = True) -> Dict[str, str]:
    """Read `key value...` lines into an insertion-ordered dict.

    Values may contain spaces (text files, command-line wav.scp entries). Duplicate keys,
    keys that are not safe file names (unless check_keys is False) and (unless allowed)
    missing values are errors naming the file and line.
    """
    path = Path(path)
    out: Dict[str, str] = {}
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            raise DataDirError(f"{path}:{lineno}: empty line")
        parts = line.split(maxsplit=1)
        key = parts[0]
        value = parts[1].strip() if len(parts) > 1 else ""
        if check_keys:
            check_key(key, f"{path}:{lineno}")
        if not value and not allow_empty_value:
            raise DataDirError(f"{path}:{lineno}: key '{key}' has no value")
        if key in out:
            raise DataDirError(f"{path}:{lineno}: duplicate key '{key}'")
        out[key] = value
    return out


def read_text(path: PathLike) -> Dict[str, str]:
    """Transcripts: an utterance may legitimately have an empty transcript."""
    return read_kv(path, allow_empty_value=True)


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")
    os.close(fd)
    # mkstemp creates 0600 files; outputs are shared like any other file (umask decides).
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_kv(
    path: PathLike,
    entries: Union[Mapping[str, str], Iterable[Tuple[str, str]]],
    sort: bool = True,
) -> None:
    """Write `key value` lines atomically, sorted by key (Kaldi's C-locale order)."""
    items: List[Tuple[str, str]] = list(entries.items() if isinstance(entries, Mapping) else entries)
    if sort:
        items.sort(key=lambda kv: kv[0])
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for key, value in items:
                if not key or any(c.isspace() for c in key):
                    raise DataDirError(f"{path}: invalid key {key!r}")
                value = str(value)
                if "\n" in value:
                    raise DataDirError(f"{path}: value of '{key}' contains a newline")
                f.write(f"{key} {value}\n" if value else f"{key}\n")


def merge_kv_files(paths: Sequence[PathLike], allow_empty_value: bool = False) -> Dict[str, str]:
    """The entries of JOB-split Kaldi files joined; a key written by two splits is an error."""
    merged: Dict[str, str] = {}
    found_in: Dict[str, PathLike] = {}
    for path in paths:
        for key, value in read_kv(path, allow_empty_value).items():
            if key in merged:
                raise DataDirError(f"{path}: key '{key}' also in an earlier split, {found_in[key]}")
            merged[key], found_in[key] = value, path
    return merged


def read_key_file(key_file: Optional[PathLike]) -> Optional[List[str]]:
    """The first column of a JOB's key file; None (meaning all keys) without one."""
    return None if key_file is None else list(read_kv(key_file, allow_empty_value=True))


def select_entries(scp: PathLike, keys: Optional[Iterable[str]] = None) -> Dict[str, str]:
    """The scp entries of `keys` (all if None), sorted by key; a missing key names the scp."""
    entries = read_kv(scp)
    if keys is None:
        return dict(sorted(entries.items()))
    keys = sorted(keys)
    missing = [key for key in keys if key not in entries]
    if missing:
        raise DataDirError(f"{scp}: {len(missing)} requested keys are missing, e.g. '{missing[0]}'")
    return {key: entries[key] for key in keys}


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, List[str]]:
    spk2utt: Dict[str, List[str]] = {}
    for utt, spk in sorted(utt2spk.items()):
        spk2utt.setdefault(spk, []).append(utt)
    return dict(sorted(spk2utt.items()))


def spk2utt_to_utt2spk(spk2utt: Mapping[str, Iterable[str]]) -> Dict[str, str]:
    utt2spk: Dict[str, str] = {}
    for spk, utts in spk2utt.items():
        for utt in utts:
            if utt in utt2spk:
                raise DataDirError(f"spk2utt: utterance '{utt}' listed under two speakers")
            utt2spk[utt] = spk
    return dict(sorted(utt2spk.items()))


def write_spk2utt(path: PathLike, utt2spk: Mapping[str, str]) -> None:
    write_kv(path, {spk: " ".join(utts) for spk, utts in utt2spk_to_spk2utt(utt2spk).items()})


def relocate_tables(old_dir: PathLike, new_dir: PathLike) -> List[Path]:
    """After `old_dir` was renamed `new_dir`: its *.scp values that named files inside it (by
    absolute or relative path) name them at `new_dir`, so the moved data stays self-consistent
    instead of pointing at whatever a new run writes in its old place. Returns the tables changed."""
    old_abs, new_abs = os.path.abspath(old_dir), os.path.abspath(new_dir)
    prefixes = {os.path.normpath(str(old_dir)) + os.sep: os.path.normpath(str(new_dir)) + os.sep,
                old_abs + os.sep: new_abs + os.sep}
    changed = []
    for table in sorted(Path(new_dir).rglob("*.scp")):
        entries = read_kv(table, allow_empty_value=True)
        moved = {key: next((new + value[len(old):] for old, new in prefixes.items() if value.startswith(old)), value)
                 for key, value in entries.items()}
        if moved != entries:
            write_kv(table, moved, sort=False)
            changed.append(table)
    return changed
