"""Kaldi data dirs for the paper's corpora (§4.1): Libri2Mix, WHAM! and WHAMR!, 16 kHz, min.

Each corpus is read as its official generation scripts lay it out (LibriMix's metadata CSVs,
the wham_scripts / whamr_scripts output folders), every referenced file is checked, and the
data dir is written into a hidden sibling, validated, then renamed into place: a data dir that
exists is finished, so reruns skip it and a killed run leaves nothing that looks finished.

Conventions:
- utt2spk maps each mixture to itself (ESPnet's enh recipes do the same): a mixture has two
  speakers, so no speaker-level grouping is meaningful, and Kaldi's "utterance ids start with
  the speaker id" sort rule holds trivially.
- WHAMR! pairs the noisy reverberant mixture (mix_both_reverb) with the anechoic sources
  (s1_anechoic, s2_anechoic) as references: the standard WHAMR! task separates and
  dereverberates at once, and the paper scores against clean speech.
- Transcripts: LibriSpeech's (free) are required for Libri2Mix; WSJ0's are licensed, so WHAM!
  and WHAMR! texts are written only when a WSJ0 transcript dir is given.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from sepalm_espnet.data.kaldi_dir import PathLike, read_text, write_kv, write_spk2utt

logger = logging.getLogger(__name__)

PARTS = ("train", "dev", "test")
CORPORA = ("libri2mix", "wham", "whamr")
# The union of the corpora's train (dev) sets, keys prefixed with f"{corpus}_" (paper §4.1).
COMBINED_SETS = {"train": "train_all", "dev": "dev_all"}

# Libri2Mix subsets per part (the paper trains on train-100 + train-360) and their LibriSpeech source.
LIBRI2MIX_SUBSETS = {"train": ("train-100", "train-360"), "dev": ("dev",), "test": ("test",)}
LIBRISPEECH_SUBSET = {
    "train-100": "train-clean-100",
    "train-360": "train-clean-360",
    "dev": "dev-clean",
    "test": "test-clean",
}
WSJ0_MIX_SPLIT = {"train": "tr", "dev": "cv", "test": "tt"}
CORPUS_AUDIO_DIR = Path("wav16k") / "min"

# LibriMix's mixture metadata columns that we read (it also writes `length` and, lately,
# `original_mixture_ID`); our OOD generator writes the same columns.
MIXTURE_CSV_COLUMNS = ("mixture_ID", "mixture_path", "source_1_path", "source_2_path", "noise_path")

LIBRI_MIXTURE_ID = re.compile(r"^(\d+-\d+-\d+)_(\d+-\d+-\d+)$")
WSJ0_DOT_LINE = re.compile(r"^(.*)\(([^()\s]+)\)\s*$")


class CorpusError(ValueError):
    """A corpus root or file is missing or malformed; the message names the db.sh variable or file."""


@dataclass(frozen=True)
class MixtureEntry:
    key: str
    mixture: str
    spk1: str
    spk2: str
    noise: str


@dataclass(frozen=True)
class WsjMixFolders:
    """Folder names inside <root>/wav16k/min/<split>/ of a WSJ0-2mix-derived corpus."""

    variable: str
    mixture: str
    spk1: str
    spk2: str
    noise: str


WHAM_FOLDERS = WsjMixFolders("WHAM", mixture="mix_both", spk1="s1", spk2="s2", noise="noise")
WHAMR_FOLDERS = WsjMixFolders(
    "WHAMR", mixture="mix_both_reverb", spk1="s1_anechoic", spk2="s2_anechoic", noise="noise"
)


@dataclass(frozen=True)
class CorpusRoots:
    """The db.sh variables, by name; None or "" means not set."""

    librispeech: Optional[PathLike] = None
    libri2mix: Optional[PathLike] = None
    wham: Optional[PathLike] = None
    whamr: Optional[PathLike] = None


def corpus_root(variable: str, value: Optional[PathLike], required: Sequence[PathLike] = ()) -> Path:
    """Check a db.sh root and the paths it must hold, so the error says which variable to fix."""
    if value is None or str(value).strip() == "":
        raise CorpusError(f"{variable} is not set in db.sh")
    root = Path(value).absolute()
    if not root.is_dir():
        raise CorpusError(f"{variable}={value}: not a directory")
    for relative in required:
        if not (root / relative).exists():
            raise CorpusError(f"{variable}={value}: missing {relative}")
    return root


def is_finished(out_dir: Path) -> bool:
    if out_dir.is_dir():
        logger.info("%s exists, skipping (delete it to prepare it again)", out_dir)
        return True
    return False


def write_separation_dir(
    out_dir: PathLike,
    entries: Sequence[MixtureEntry],
    texts: Optional[Tuple[Mapping[str, str], Mapping[str, str]]] = None,
) -> Path:
    """Write, validate, then rename into place, so an existing dir is always a finished one."""
    from sepalm_espnet.data.data_dir import validate_data_dir

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_kv(tmp / "wav.scp", {e.key: e.mixture for e in entries})
        write_kv(tmp / "spk1.scp", {e.key: e.spk1 for e in entries})
        write_kv(tmp / "spk2.scp", {e.key: e.spk2 for e in entries})
        write_kv(tmp / "noise1.scp", {e.key: e.noise for e in entries})
        utt2spk = {e.key: e.key for e in entries}
        write_kv(tmp / "utt2spk", utt2spk)
        write_spk2utt(tmp / "spk2utt", utt2spk)
        if texts is not None:
            write_kv(tmp / "text_spk1", texts[0])
            write_kv(tmp / "text_spk2", texts[1])
        validate_data_dir(tmp)
    logger.info("wrote %s (%d mixtures%s)", out_dir, len(entries), "" if texts else ", no text")
    return out_dir


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a hidden sibling of `path`; rename it to `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def locate_audio(written: str, corpus_dir: Path, where: str) -> str:
    """LibriMix writes absolute paths; a corpus moved since then is found under its new root."""
    path = Path(written)
    if path.is_absolute() and path.is_file():
        return str(path)
    moved = corpus_dir.joinpath(*path.parts[-3:])  # <split>/<folder>/<id>.wav
    if moved.is_file():
        return str(moved)
    raise CorpusError(f"{where}: audio file not found: {written}")


def read_mixture_csv(csv_path: Path, corpus_dir: Path) -> List[MixtureEntry]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in MIXTURE_CSV_COLUMNS:
            if column not in header:
                raise CorpusError(f"{csv_path}: missing column '{column}'")
        entries: Dict[str, MixtureEntry] = {}
        for lineno, row in enumerate(reader, 2):
            where = f"{csv_path}:{lineno}"
            empty = [column for column in MIXTURE_CSV_COLUMNS if not row[column]]
            if empty:
                raise CorpusError(f"{where}: no value in column '{empty[0]}'")
            key = row["mixture_ID"]
            if key in entries:
                raise CorpusError(f"{where}: duplicate mixture_ID '{key}'")
            paths = [locate_audio(row[column], corpus_dir, where) for column in MIXTURE_CSV_COLUMNS[1:]]
            entries[key] = MixtureEntry(key, *paths)
    if not entries:
        raise CorpusError(f"{csv_path}: no mixtures listed")
    return list(entries.values())


def split_libri_mixture_id(key: str, where: str) -> Tuple[str, str]:
    match = LIBRI_MIXTURE_ID.match(key)
    if match is None:
        raise CorpusError(
            f"{where}: mixture_ID '{key}' is not <spk>-<chapter>-<utt>_<spk>-<chapter>-<utt>"
        )
    return match.group(1), match.group(2)


class LibriSpeechTranscripts:
    """Reads each chapter's .trans.txt once; mixtures of one chapter are many."""

    def __init__(self, root: Path):
        self.root = root
        self.chapters: Dict[Path, Dict[str, str]] = {}

    def __call__(self, subset: str, utt_id: str) -> str:
        speaker, chapter, _ = utt_id.split("-")
        path = self.root / subset / speaker / chapter / f"{speaker}-{chapter}.trans.txt"
        if path not in self.chapters:
            if not path.is_file():
                raise CorpusError(f"LIBRISPEECH={self.root}: missing transcript file {path}")
            self.chapters[path] = read_text(path)
        text = self.chapters[path].get(utt_id)
        if text is None:
            raise CorpusError(f"{path}: no transcript for utterance '{utt_id}'")
        return text


def prepare_libri2mix(
    libri2mix_root: Optional[PathLike],
    librispeech_root: Optional[PathLike],
    part: str,
    out_dir: PathLike,
) -> Path:
    """One part of Libri2Mix (train = train-100 + train-360), texts split from the mixture ids."""
    out_dir = Path(out_dir)
    if is_finished(out_dir):
        return out_dir
    subsets = LIBRI2MIX_SUBSETS[part]
    csv_paths = {s: CORPUS_AUDIO_DIR / "metadata" / f"mixture_{s}_mix_both.csv" for s in subsets}
    root = corpus_root("LIBRI2MIX", libri2mix_root, required=list(csv_paths.values()))
    transcripts = LibriSpeechTranscripts(
        corpus_root("LIBRISPEECH", librispeech_root, required=[LIBRISPEECH_SUBSET[s] for s in subsets])
    )
    entries: List[MixtureEntry] = []
    text_spk1: Dict[str, str] = {}
    text_spk2: Dict[str, str] = {}
    for subset, relative_csv in csv_paths.items():
        csv_path = root / relative_csv
        for entry in read_mixture_csv(csv_path, root / CORPUS_AUDIO_DIR):
            utt1, utt2 = split_libri_mixture_id(entry.key, str(csv_path))
            text_spk1[entry.key] = transcripts(LIBRISPEECH_SUBSET[subset], utt1)
            text_spk2[entry.key] = transcripts(LIBRISPEECH_SUBSET[subset], utt2)
            entries.append(entry)
    return write_separation_dir(out_dir, entries, (text_spk1, text_spk2))


@functools.lru_cache(maxsize=4)
def read_wsj0_transcripts(wsj0_text_dir: str) -> Dict[str, str]:
    """All `text (uttid)` lines of the WSJ0 .dot files found below `wsj0_text_dir`.

    Texts are kept verbatim (WSJ0's punctuation and noise markers included): normalizing them
    is the scorer's job, and one normalization must serve every corpus.
    """
    root = Path(wsj0_text_dir)
    if not root.is_dir():
        raise CorpusError(f"--wsj0_text_dir {wsj0_text_dir}: directory does not exist")
    texts: Dict[str, str] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in sorted(filenames):
            if not name.lower().endswith(".dot"):
                continue
            path = Path(dirpath) / name
            with open(path, encoding="utf-8", errors="replace") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    match = WSJ0_DOT_LINE.match(line.rstrip("\n"))
                    if match is None:
                        raise CorpusError(f"{path}:{lineno}: expected 'text (uttid)'")
                    texts[match.group(2).lower()] = " ".join(match.group(1).split())
    if not texts:
        raise CorpusError(f"--wsj0_text_dir {wsj0_text_dir}: no .dot transcript files found")
    return texts


def wsj0_mixture_texts(
    keys: Iterable[str], wsj0_text_dir: PathLike, where: str
) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Texts of WSJ0-2mix ids `<utt1>_<gain1>_<utt2>_<gain2>` from the WSJ0 transcripts."""
    transcripts = read_wsj0_transcripts(str(Path(wsj0_text_dir).absolute()))
    text_spk1: Dict[str, str] = {}
    text_spk2: Dict[str, str] = {}
    for key in keys:
        parts = key.split("_")
        if len(parts) != 4:
            raise CorpusError(f"{where}: '{key}' is not a WSJ0-2mix id <utt1>_<gain1>_<utt2>_<gain2>")
        for utt, texts in ((parts[0], text_spk1), (parts[2], text_spk2)):
            if utt.lower() not in transcripts:
                raise CorpusError(f"--wsj0_text_dir {wsj0_text_dir}: no transcript for utterance '{utt}'")
            texts[key] = transcripts[utt.lower()]
    return text_spk1, text_spk2


def list_wsj_mix_entries(split_dir: Path, folders: WsjMixFolders, variable_value: str) -> List[MixtureEntry]:
    """Mixtures are the wavs of the mixture folder; each needs its sources and noise beside it."""
    references = (folders.spk1, folders.spk2, folders.noise)
    for folder in (folders.mixture,) + references:
        if not (split_dir / folder).is_dir():
            raise CorpusError(f"{variable_value}: missing {split_dir / folder}")
    mixtures = sorted((split_dir / folders.mixture).glob("*.wav"))
    if not mixtures:
        raise CorpusError(f"{variable_value}: no .wav files in {split_dir / folders.mixture}")
    entries = []
    for mixture in mixtures:
        companions = [split_dir / folder / mixture.name for folder in references]
        for path in companions:
            if not path.is_file():
                raise CorpusError(f"{variable_value}: audio file not found: {path}")
        entries.append(MixtureEntry(mixture.stem, str(mixture), *map(str, companions)))
    return entries


def prepare_wsj_mix_variant(
    folders: WsjMixFolders,
    root_value: Optional[PathLike],
    part: str,
    out_dir: PathLike,
    wsj0_text_dir: Optional[PathLike] = None,
) -> Path:
    out_dir = Path(out_dir)
    if is_finished(out_dir):
        return out_dir
    split_relative = CORPUS_AUDIO_DIR / WSJ0_MIX_SPLIT[part]
    root = corpus_root(folders.variable, root_value, required=[split_relative])
    entries = list_wsj_mix_entries(root / split_relative, folders, f"{folders.variable}={root_value}")
    texts = None
    if wsj0_text_dir:
        texts = wsj0_mixture_texts((e.key for e in entries), wsj0_text_dir, str(root / split_relative))
    else:
        logger.info("%s: no --wsj0_text_dir given, writing no text_spk1/text_spk2", out_dir)
    return write_separation_dir(out_dir, entries, texts)


def prepare_wham(
    wham_root: Optional[PathLike], part: str, out_dir: PathLike, wsj0_text_dir: Optional[PathLike] = None
) -> Path:
    return prepare_wsj_mix_variant(WHAM_FOLDERS, wham_root, part, out_dir, wsj0_text_dir)


def prepare_whamr(
    whamr_root: Optional[PathLike], part: str, out_dir: PathLike, wsj0_text_dir: Optional[PathLike] = None
) -> Path:
    return prepare_wsj_mix_variant(WHAMR_FOLDERS, whamr_root, part, out_dir, wsj0_text_dir)


def combine_corpora(set_dirs: Mapping[str, PathLike], out_dir: PathLike) -> Path:
    """Union of per-corpus sets, keys prefixed f"{corpus}_" so they stay unique and sorted.

    Only files every part has are kept: without WSJ0 transcripts, the union has no text.
    """
    from sepalm_espnet.data.data_dir import combine_data_dirs, validate_data_dir

    out_dir = Path(out_dir)
    if is_finished(out_dir):
        return out_dir
    with atomic_dir(out_dir) as tmp:
        left_out = combine_data_dirs(tmp, [Path(d) for d in set_dirs.values()], [f"{c}_" for c in set_dirs])
        validate_data_dir(tmp)
    logger.info("wrote %s from %s%s", out_dir, ", ".join(set_dirs),
                f" (left out, not in every part: {', '.join(left_out)})" if left_out else "")
    return out_dir


def prepare_corpora(
    datadir: PathLike,
    corpora: Sequence[str] = CORPORA,
    roots: CorpusRoots = CorpusRoots(),
    wsj0_text_dir: Optional[PathLike] = None,
) -> List[Path]:
    """Every part of each corpus as data/<corpus>_<part>, plus train_all and dev_all."""
    unknown = sorted(set(corpora) - set(CORPORA))
    if unknown or not corpora:
        raise CorpusError(f"unknown corpora {unknown}; choose from {list(CORPORA)}")
    datadir = Path(datadir)
    written = []
    for corpus in corpora:
        for part in PARTS:
            out_dir = datadir / f"{corpus}_{part}"
            if corpus == "libri2mix":
                written.append(prepare_libri2mix(roots.libri2mix, roots.librispeech, part, out_dir))
            elif corpus == "wham":
                written.append(prepare_wham(roots.wham, part, out_dir, wsj0_text_dir))
            else:
                written.append(prepare_whamr(roots.whamr, part, out_dir, wsj0_text_dir))
    for part, combined in COMBINED_SETS.items():
        parts = {corpus: datadir / f"{corpus}_{part}" for corpus in corpora}
        written.append(combine_corpora(parts, datadir / combined))
    return written
