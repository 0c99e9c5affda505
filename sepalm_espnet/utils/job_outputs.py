"""The one merger of the recipe's JOB arrays (scripts/stage_lib.sh job_array).

Every worker writes into <dir>/logdir/output.JOB/: Kaldi tables (`key value` lines, values may
be empty), optionally json records, and data the tables point to (wavs/, *.ark) that stays in
place. The merger joins each table into <dir>/<name>, sorted, and refuses a key written by two
jobs, a table one job lacks, or a job that left out keys of its split: an output that silently
lost utterances must never be marked finished.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Mapping, Set

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, merge_kv_files, read_kv, write_kv
from sepalm_espnet.data.speakers import SPEAKER_KEY

logger = logging.getLogger(__name__)
DATA_SUFFIXES = (".ark", ".log", ".wav", ".flac")
RTF_FILE = "rtf.json"


def job_dirs(dir: PathLike, num_jobs: int) -> List[Path]:
    dirs = [Path(dir) / "logdir" / f"output.{job}" for job in range(1, num_jobs + 1)]
    for job_dir in dirs:
        if not job_dir.is_dir():
            raise DataDirError(f"{job_dir}: missing (did the job fail? see its log in {job_dir.parent})")
    return dirs


def _outputs_of(job_dir: Path) -> Set[str]:
    return {p.name for p in job_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(DATA_SUFFIXES)}


def _input_key(key: str, inputs: Set[str]) -> str:
    """A table is keyed by its split's keys or, per estimate, by <key>_spk<n>."""
    if key in inputs:
        return key
    match = SPEAKER_KEY.match(key)
    return match["utt"] if match and match["utt"] in inputs else key


def _check_coverage(table: Mapping[str, str], split_keys: Set[str], where: Path) -> None:
    covered = {_input_key(key, split_keys) for key in table}
    stray = sorted(covered - split_keys)
    if stray:
        raise DataDirError(f"{where}: key '{stray[0]}' is not in its split")
    missing = sorted(split_keys - covered)
    if missing:
        raise DataDirError(f"{where}: {len(missing)} key(s) of its split missing, e.g. '{missing[0]}'")


def merge_json(paths: List[Path], output: Path) -> None:
    """RTF records are pooled by metrics.rtf; other records are counts, summed key by key."""
    if output.name == RTF_FILE:
        from sepalm_espnet.metrics.rtf import merge_rtf_files

        merge_rtf_files(paths, output)
        return
    total: Dict[str, float] = {}
    for path in paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not all(isinstance(v, (int, float)) for v in record.values()):
            raise DataDirError(f"{path}: only records of counts can be merged")
        for key, value in record.items():
            total[key] = total.get(key, 0) + value
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(total, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(output)


def merge_job_outputs(dir: PathLike, num_jobs: int) -> List[str]:
    """Join <dir>/logdir/output.{1..num_jobs}/ into <dir>; returns the merged file names."""
    dir = Path(dir)
    dirs = job_dirs(dir, num_jobs)
    names = _outputs_of(dirs[0])
    if not names:
        raise DataDirError(f"{dirs[0]}: the job wrote no output")
    for job_dir in dirs[1:]:
        if _outputs_of(job_dir) != names:
            raise DataDirError(f"{job_dir}: wrote {sorted(_outputs_of(job_dir))}, {dirs[0]} wrote {sorted(names)}")
    splits = [set(read_kv(dir / "logdir" / f"keys.{job}.scp", allow_empty_value=True))
              for job in range(1, num_jobs + 1)]
    for name in sorted(names):
        paths = [job_dir / name for job_dir in dirs]
        if name.endswith(".json"):
            merge_json(paths, dir / name)
            continue
        for path, split in zip(paths, splits):
            _check_coverage(read_kv(path, allow_empty_value=True), split, path)
        write_kv(dir / name, merge_kv_files(paths, allow_empty_value=True))
    logger.info("%s: merged %s from %d job(s)", dir, " ".join(sorted(names)), num_jobs)
    return sorted(names)
