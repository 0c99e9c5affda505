"""Whole-data-directory tools: validate, fix, subset and combine Kaldi-style data dirs.

A data dir is a set of `key value` tables that must agree: every utterance table (wav.scp,
spk1.scp, noise1.scp, utt2spk, text_spk1, utt2num_samples, ...) has the same sorted keys, and
spk2utt is derived from utt2spk. Which kind of key a file holds follows from its name, so tables
that later stages add (text_pt_spk1, units_spk1, ...) are checked without being listed here.
With a `segments` file, utterance keys are segment ids and wav.scp, reco2dur hold recordings.
"""
from __future__ import annotations

import random
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from sepalm_espnet.data.audio import AudioError, audio_length
from sepalm_espnet.data.kaldi_dir import (
    DataDirError,
    PathLike,
    check_key,
    read_kv,
    read_text,
    utt2spk_to_spk2utt,
    write_kv,
)

UTTERANCE, RECORDING, SPEAKER = "utterance", "recording", "speaker"
POSITIVE_INT_TABLES = ("utt2num_samples", "reco2num_samples")
POSITIVE_FLOAT_TABLES = ("utt2dur", "reco2dur")
# The audio a separation dir holds per utterance: the mixture, references, noise (format.py).
AUDIO_SCP = re.compile(r"wav\.scp|(spk|noise|dereverb)\d+\.scp")
SHOWN_PER_PROBLEM = 3  # a 100k-line dir with one systematic error should not print 100k lines

Table = Dict[str, str]


def key_kind(name: str, has_segments: bool) -> Optional[str]:
    """What the keys of data-dir file `name` identify; None for files that are not tables."""
    if name.startswith("."):
        return None
    if name.endswith(".scp"):
        return RECORDING if name == "wav.scp" and has_segments else UTTERANCE
    if name.startswith("reco2"):  # without segments, each recording is one utterance
        return RECORDING if has_segments else UTTERANCE
    if re.match(r"spk2[a-z]", name):
        return SPEAKER
    if name in ("segments", "text") or name.startswith(("utt2", "text_")):
        return UTTERANCE
    return None


def read_table(path: Path) -> Table:
    """Transcript tables may hold empty values; no other table may.

    utt2spk's values are speaker ids, which become keys (spk2utt) and so must be ids too.
    """
    table = read_text(path) if path.name.startswith("text") else read_kv(path)
    if path.name == "utt2spk":
        for lineno, spk in enumerate(table.values(), 1):
            check_key(spk, f"{path}:{lineno}", what="speaker")
    return table


def table_names(data_dir: Path) -> List[str]:
    has_segments = (data_dir / "segments").is_file()
    return sorted(p.name for p in data_dir.iterdir()
                  if p.is_file() and key_kind(p.name, has_segments) is not None)


def other_files(data_dir: Path) -> List[str]:
    """Plain files that are not tables (ESPnet's feats_type, audio_format): copied as they are."""
    has_segments = (data_dir / "segments").is_file()
    return sorted(p.name for p in data_dir.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and key_kind(p.name, has_segments) is None)


def load_tables(data_dir: PathLike) -> Dict[str, Table]:
    """All tables of a data dir, for tools that rewrite it (and so rebuild spk2utt from utt2spk).

    Raises on the first malformed table, without wav.scp, or with spk2utt but no utt2spk.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataDirError(f"{data_dir}: not a directory")
    if not (data_dir / "wav.scp").is_file():
        raise DataDirError(f"{data_dir / 'wav.scp'}: file not found")
    if (data_dir / "spk2utt").is_file() and not (data_dir / "utt2spk").is_file():
        raise DataDirError(f"{data_dir / 'utt2spk'}: file not found; create it from spk2utt "
                           f"with utils/spk2utt_to_utt2spk.sh")
    return {name: read_table(data_dir / name) for name in table_names(data_dir)}


def read_spk2utt(path: PathLike) -> Dict[str, List[str]]:
    """spk2utt as lists; an utterance under two speakers is an error naming the line."""
    owner: Dict[str, str] = {}
    spk2utt: Dict[str, List[str]] = {}
    for lineno, (spk, utts) in enumerate(read_kv(path).items(), 1):
        spk2utt[spk] = utts.split()
        for utt in spk2utt[spk]:
            if utt in owner:
                raise DataDirError(f"{path}:{lineno}: utterance '{utt}' is also listed "
                                   f"under speaker '{owner[utt]}'")
            owner[utt] = spk
    return spk2utt


def write_or_print(path: Optional[PathLike], entries: Mapping[str, str]) -> None:
    """Write a table atomically, or to stdout when no path is given (Kaldi's `> file` habit)."""
    if path is not None:
        write_kv(path, entries)
        return
    for key, value in sorted(entries.items()):
        sys.stdout.write(f"{key} {value}\n" if value else f"{key}\n")


# ----------------------------------------------------------------------------- validation


def _examples(problems: List[str], what: str) -> List[str]:
    """The first few of a family of problems, then how many more there are."""
    if len(problems) <= SHOWN_PER_PROBLEM:
        return problems
    return problems[:SHOWN_PER_PROBLEM] + [f"... and {len(problems) - SHOWN_PER_PROBLEM} "
                                           f"more {what}"]


def _order_problems(path: Path, table: Table) -> List[str]:
    previous = None
    for lineno, key in enumerate(table, 1):
        if previous is not None and key <= previous:
            return [f"{path}:{lineno}: key '{key}' is out of order (after '{previous}'); "
                    f"sort with utils/fix_data_dir.sh"]
        previous = key
    return []


def _key_set_problems(path: Path, table: Table, ref_path: Path, ref: Table) -> List[str]:
    extra = [f"{path}:{lineno}: key '{key}' is not in {ref_path.name}"
             for lineno, key in enumerate(table, 1) if key not in ref]
    missing = [f"{path}: key '{key}' of {ref_path}:{lineno} is missing"
               for lineno, key in enumerate(ref, 1) if key not in table]
    return _examples(extra, f"keys of {path} not in {ref_path.name}") + _examples(
        missing, f"keys missing from {path}")


def _missing_audio(value: str) -> Optional[str]:
    """The file a wav.scp-style value needs that does not exist; None when fine or unknowable.

    Commands (`sox ... |`) cannot be checked without running them; `file.ark:offset[...]`
    values (kaldiio) need the ark file. Relative paths start from the current directory (the
    recipe dir), as in Kaldi.
    """
    if value.endswith("|") or Path(value).exists():
        return None
    ark = re.fullmatch(r"(.+):\d+(\[[^\]]*\])?", value)
    if ark and Path(ark.group(1)).exists():
        return None
    return ark.group(1) if ark else value


def _audio_problems(path: Path, table: Table) -> List[str]:
    problems = []
    for lineno, (key, value) in enumerate(table.items(), 1):
        missing = _missing_audio(value)
        if missing is not None:
            problems.append(f"{path}:{lineno}: '{key}': audio file '{missing}' not found")
    return _examples(problems, f"missing audio files in {path}")


def _number_problems(path: Path, table: Table) -> List[str]:
    number_type = int if path.name in POSITIVE_INT_TABLES else float
    problems = []
    for lineno, (key, value) in enumerate(table.items(), 1):
        try:
            ok = number_type(value) > 0
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"{path}:{lineno}: '{key}': expected a positive "
                            f"{number_type.__name__}, got '{value}'")
    return _examples(problems, f"bad values in {path}")


def _segments_problems(path: Path, segments: Table, recordings: Table) -> List[str]:
    problems = []
    for lineno, (key, value) in enumerate(segments.items(), 1):
        fields = value.split()
        try:
            ok = len(fields) == 3 and 0 <= float(fields[1]) < float(fields[2])
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"{path}:{lineno}: '{key}': expected '<recording> <start> <end>' "
                            f"with 0 <= start < end, got '{value}'")
        elif fields[0] not in recordings:
            problems.append(f"{path}:{lineno}: '{key}': recording '{fields[0]}' is not in "
                            f"wav.scp")
    return _examples(problems, f"bad segments in {path}")


def _speaker_problems(data_dir: Path, tables: Mapping[str, Table]) -> List[str]:
    utt2spk_path, spk2utt_path = data_dir / "utt2spk", data_dir / "spk2utt"
    if "utt2spk" not in tables:
        if spk2utt_path.is_file():
            return [f"{utt2spk_path}: file not found (spk2utt needs it)"]
        return []
    if not spk2utt_path.is_file():
        return [f"{spk2utt_path}: file not found; create it with utils/utt2spk_to_spk2utt.sh"]
    if "spk2utt" not in tables:
        return []  # malformed: already reported while reading
    expected = utt2spk_to_spk2utt(tables["utt2spk"])
    first_line = {}
    for lineno, spk in enumerate(tables["utt2spk"].values(), 1):
        first_line.setdefault(spk, lineno)
    problems = []
    for lineno, (spk, utts) in enumerate(tables["spk2utt"].items(), 1):
        if spk not in expected:
            problems.append(f"{spk2utt_path}:{lineno}: speaker '{spk}' has no utterance in "
                            f"utt2spk")
        elif utts.split() != expected[spk]:
            problems.append(f"{spk2utt_path}:{lineno}: speaker '{spk}' lists "
                            f"'{utts}' but utt2spk gives '{' '.join(expected[spk])}'")
    problems += [f"{spk2utt_path}: speaker '{spk}' of {utt2spk_path}:{first_line[spk]} is missing"
                 for spk in expected if spk not in tables["spk2utt"]]
    return _examples(problems, f"disagreements between {spk2utt_path} and utt2spk")


def _text_problems(data_dir: Path, require_text: bool) -> List[str]:
    """Each speaker source spkN.scp needs its transcript text_spkN (or `text` for one source).

    Transcripts are required when asked for, or as soon as one of them exists.
    """
    sources = sorted(int(m.group(1)) for p in data_dir.iterdir()
                     if (m := re.fullmatch(r"spk(\d+)\.scp", p.name)))
    problems = [f"{data_dir / f'spk{n}.scp'}: file not found (spk{max(sources)}.scp exists)"
                for n in range(1, max(sources, default=0) + 1) if n not in sources]
    names = [f"text_spk{n}" for n in sources] or ["text"]
    present = [name for name in names if (data_dir / name).is_file()]
    if require_text or present:
        why = "required by --require-text" if require_text else f"{present[0]} exists"
        problems += [f"{data_dir / name}: file not found ({why})"
                     for name in names if name not in present]
    return problems


def _audio_length_problems(data_dir: Path, tables: Mapping[str, Table],
                           has_segments: bool) -> List[str]:
    """Headers of the audio files: complete, and each source as long as its mixture.

    Commands (`... |`) and ark offsets are not opened. With segments, wav.scp holds whole
    recordings, so only the headers are checked.
    """
    lengths: Dict[str, Dict[str, Tuple[int, int, int]]] = {}  # scp -> key -> (n, fs, line)
    unreadable: List[str] = []
    for name in sorted(n for n in tables if AUDIO_SCP.fullmatch(n)):
        lengths[name] = {}
        for lineno, (key, value) in enumerate(tables[name].items(), 1):
            if value.endswith("|") or not Path(value).is_file():
                continue  # commands cannot be checked; missing files are already reported
            try:
                frames, fs = audio_length(value)
            except AudioError as exc:
                unreadable.append(f"{data_dir / name}:{lineno}: '{key}': {exc}")
                continue
            lengths[name][key] = frames, fs, lineno
    problems = _examples(unreadable, "unreadable or truncated audio files")
    mixture = lengths.get("wav.scp", {})
    if has_segments or not mixture:
        return problems
    mix_path = data_dir / "wav.scp"
    mismatched = []
    for name, entries in lengths.items():
        for key, (frames, fs, lineno) in entries.items():
            if name != "wav.scp" and key in mixture and mixture[key][:2] != (frames, fs):
                mix_frames, mix_fs, mix_line = mixture[key]
                mismatched.append(f"{data_dir / name}:{lineno}: '{key}': {frames} samples at "
                                  f"{fs} Hz, but the mixture {mix_path}:{mix_line} has "
                                  f"{mix_frames} samples at {mix_fs} Hz")
    problems += _examples(mismatched, "sources whose length or rate differs from the mixture")
    counts = tables.get("utt2num_samples", {})
    wrong_counts = [f"{data_dir / 'utt2num_samples'}:{lineno}: '{key}': {value} samples, but "
                    f"the mixture {mix_path}:{mixture[key][2]} has {mixture[key][0]}"
                    for lineno, (key, value) in enumerate(counts.items(), 1)
                    if key in mixture and value.isdigit() and int(value) != mixture[key][0]]
    return problems + _examples(wrong_counts, "wrong counts in utt2num_samples")


def find_problems(data_dir: PathLike, require_text: bool = False,
                  check_audio: bool = False) -> List[str]:
    """Every problem found, each naming the file (and line) to fix; empty when valid.

    check_audio also reads each audio file's header (see _audio_length_problems): slower,
    so asked for.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return [f"{data_dir}: not a directory"]
    if not (data_dir / "wav.scp").is_file():
        return [f"{data_dir / 'wav.scp'}: file not found"]
    has_segments = (data_dir / "segments").is_file()
    problems: List[str] = []
    tables: Dict[str, Table] = {}
    for name in table_names(data_dir):
        try:
            tables[name] = read_table(data_dir / name)
        except DataDirError as exc:
            problems.append(str(exc))
    for name, table in tables.items():
        problems += _order_problems(data_dir / name, table)
    utterance_ref = "segments" if has_segments else "wav.scp"
    refs = {UTTERANCE: utterance_ref, RECORDING: "wav.scp", SPEAKER: "spk2utt"}
    for name, table in tables.items():
        ref = refs[key_kind(name, has_segments)]
        if name != ref and ref in tables:
            problems += _key_set_problems(data_dir / name, table, data_dir / ref, tables[ref])
        if name.endswith(".scp"):
            problems += _audio_problems(data_dir / name, table)
        if name in POSITIVE_INT_TABLES + POSITIVE_FLOAT_TABLES:
            problems += _number_problems(data_dir / name, table)
    if has_segments and "segments" in tables and "wav.scp" in tables:
        problems += _segments_problems(data_dir / "segments", tables["segments"], tables["wav.scp"])
    problems += _speaker_problems(data_dir, tables)
    problems += _text_problems(data_dir, require_text)
    if check_audio:
        problems += _audio_length_problems(data_dir, tables, has_segments)
    return problems


def validate_data_dir(data_dir: PathLike, require_text: bool = False,
                      check_audio: bool = False) -> None:
    """Raise DataDirError listing every problem, one per line."""
    problems = find_problems(data_dir, require_text, check_audio)
    if problems:
        raise DataDirError(f"{data_dir}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------- rewriting


def restrict_tables(tables: Mapping[str, Table], utterances: Iterable[str]) -> Dict[str, Table]:
    """The tables cut down to `utterances`, with the recordings and speakers they still use.

    spk2utt is rebuilt from utt2spk rather than filtered, so it cannot disagree with it.
    """
    has_segments = "segments" in tables
    keep = set(utterances)
    recordings = ({value.split()[0] for key, value in tables["segments"].items() if key in keep}
                  if has_segments else keep)
    speakers = {spk for utt, spk in tables.get("utt2spk", {}).items() if utt in keep}
    wanted = {UTTERANCE: keep, RECORDING: recordings, SPEAKER: speakers}
    out = {name: {key: value for key, value in table.items()
                  if key in wanted[key_kind(name, has_segments)]}
           for name, table in tables.items() if name != "spk2utt"}
    if "utt2spk" in out:
        out["spk2utt"] = {spk: " ".join(utts)
                          for spk, utts in utt2spk_to_spk2utt(out["utt2spk"]).items()}
    return out


def _utterance_keys(tables: Mapping[str, Table]) -> List[str]:
    return sorted(tables["segments"] if "segments" in tables else tables["wav.scp"])


def _write_tables(dest: Path, tables: Mapping[str, Table]) -> None:
    """Write the tables into dest, removing tables of an earlier run that are not among them."""
    dest.mkdir(parents=True, exist_ok=True)
    for stale in set(table_names(dest)) - set(tables):
        (dest / stale).unlink()
    for name, table in tables.items():
        write_kv(dest / name, table)


def fix_data_dir(data_dir: PathLike) -> Dict[str, List[str]]:
    """Keep only utterances present in every table, sort, rebuild spk2utt.

    The original tables are copied to `<dir>/.backup/` first. Returns the dropped keys by file.
    """
    data_dir = Path(data_dir)
    tables = load_tables(data_dir)
    has_segments = "segments" in tables

    def keys_in_every(kind: str) -> Set[str]:
        return set.intersection(*(set(table) for name, table in tables.items()
                                  if key_kind(name, has_segments) == kind))

    keep = keys_in_every(UTTERANCE)
    if has_segments:
        recordings = keys_in_every(RECORDING)
        keep = {utt for utt in keep if tables["segments"][utt].split()[0] in recordings}
    if not keep:
        raise DataDirError(f"{data_dir}: no utterance is in every table; nothing to keep")
    fixed = restrict_tables(tables, keep)
    backup = data_dir / ".backup"
    backup.mkdir(exist_ok=True)
    for name in tables:
        shutil.copy2(data_dir / name, backup / name)
    _write_tables(data_dir, fixed)
    return {name: sorted(set(tables[name]) - set(fixed.get(name, {})))
            for name in tables if set(tables[name]) - set(fixed.get(name, {}))}


def _read_key_list(path: PathLike, known: Set[str]) -> Set[str]:
    """The first column of each line (any table works as a key list); keys must be known."""
    keys = read_kv(path, allow_empty_value=True)
    for lineno, key in enumerate(keys, 1):
        if key not in known:
            raise DataDirError(f"{path}:{lineno}: key '{key}' is not in the source data dir")
    return set(keys)


def select_utterances(utterances: Sequence[str], key_file: Optional[PathLike] = None,
                      first: Optional[int] = None, last: Optional[int] = None,
                      random_count: Optional[int] = None, seed: int = 0) -> List[str]:
    """Exactly one way of choosing: a key file, the first/last N, or N at random (seeded)."""
    chosen = [x is not None for x in (key_file, first, last, random_count)]
    if sum(chosen) != 1:
        raise ValueError("choose utterances by exactly one of key_file, first, last, random_count")
    if key_file is not None:
        return sorted(_read_key_list(key_file, set(utterances)))
    count = next(x for x in (first, last, random_count) if x is not None)
    if not 0 < count <= len(utterances):
        raise DataDirError(f"cannot select {count} of {len(utterances)} utterances")
    if first is not None:
        return list(utterances[:count])
    if last is not None:
        return list(utterances[-count:])
    return sorted(random.Random(seed).sample(list(utterances), count))


def subset_data_dir(src: PathLike, dest: PathLike, key_file: Optional[PathLike] = None,
                    first: Optional[int] = None, last: Optional[int] = None,
                    random_count: Optional[int] = None, seed: int = 0) -> List[str]:
    """Copy the utterances chosen as in select_utterances from src into dest; return them."""
    src, dest = Path(src), Path(dest)
    if dest.resolve() == src.resolve():
        raise DataDirError(f"{dest}: destination is the source data dir")
    tables = load_tables(src)
    chosen = select_utterances(_utterance_keys(tables), key_file, first, last, random_count, seed)
    _write_tables(dest, restrict_tables(tables, chosen))
    for name in other_files(src):
        shutil.copy2(src / name, dest / name)
    return chosen


def _prefixed(tables: Mapping[str, Table], prefix: str) -> Dict[str, Table]:
    """Prefix every utterance, recording and speaker id, in keys and in the values naming them."""
    out = {name: {prefix + key: value for key, value in table.items()}
           for name, table in tables.items() if name != "spk2utt"}
    if "utt2spk" in out:
        out["utt2spk"] = {utt: prefix + spk for utt, spk in out["utt2spk"].items()}
    if "segments" in out:
        out["segments"] = {seg: prefix + value for seg, value in out["segments"].items()}
    return out


def combine_data_dirs(dest: PathLike, sources: Sequence[PathLike],
                      prefixes: Optional[Sequence[str]] = None) -> List[str]:
    """Merge data dirs into dest, optionally prefixing each source's ids to keep them apart.

    Only tables every source has are combined; returns the names of those left out. A shared
    utterance id is an error; a shared speaker or recording id must carry the same values.
    """
    dest = Path(dest)
    if not sources:
        raise DataDirError(f"{dest}: no source data dirs to combine")
    prefixes = list(prefixes) if prefixes else [""] * len(sources)
    if len(prefixes) != len(sources):
        raise DataDirError(f"{len(prefixes)} prefixes for {len(sources)} source dirs")
    if any(dest.resolve() == Path(src).resolve() for src in sources):
        raise DataDirError(f"{dest}: destination is one of the source data dirs")
    loaded = [_prefixed(load_tables(src), prefix) for src, prefix in zip(sources, prefixes)]
    with_segments = {"segments" in tables for tables in loaded}
    if len(with_segments) > 1:
        raise DataDirError("cannot combine data dirs with and without a segments file")
    has_segments = with_segments.pop()
    common = set.intersection(*(set(tables) for tables in loaded))
    merged: Dict[str, Table] = {name: {} for name in common}
    origin: Dict[Tuple[str, str], PathLike] = {}
    for src, tables in zip(sources, loaded):
        for name in common:
            for key, value in tables[name].items():
                if key in merged[name]:
                    kind = key_kind(name, has_segments)
                    if kind == UTTERANCE or merged[name][key] != value:
                        raise DataDirError(
                            f"{name}: {kind} '{key}' is in both {origin[name, key]} and {src}"
                            + ("; give each source a prefix" if kind == UTTERANCE
                               else " with different values"))
                    continue
                merged[name][key] = value
                origin[name, key] = src
    if "utt2spk" in merged:
        merged["spk2utt"] = {spk: " ".join(utts)
                             for spk, utts in utt2spk_to_spk2utt(merged["utt2spk"]).items()}
    _write_tables(dest, merged)
    left_out = sorted(set().union(*(set(tables) for tables in loaded)) - common)
    first_src = Path(sources[0])
    for name in other_files(first_src):
        contents = {(Path(src) / name).read_bytes() if (Path(src) / name).is_file() else None
                    for src in sources}
        if len(contents) == 1:
            shutil.copy2(first_src / name, dest / name)
        else:
            left_out.append(name)
    return left_out
