"""Stage 4's per-estimate data dir: speaker order is decided here, once, for every later stage."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from sepalm_espnet.data.kaldi_dir import PathLike, read_kv, read_text, write_kv
from sepalm_espnet.data.speakers import estimate_tables
from sepalm_espnet.metrics.separation import PERMUTATION_FILE, permutations_of_dirs, write_permutation


def _speaker_files(data_dir: Path, pattern: str) -> List[Path]:
    files = []
    while (data_dir / pattern.format(len(files) + 1)).is_file():
        files.append(data_dir / pattern.format(len(files) + 1))
    return files


def write_estimate_dir(data_dir: PathLike, output_dir: PathLike, keys: Optional[Sequence[str]] = None) -> None:
    """From the separator's spk<n>.scp in output_dir: the PIT `permutation` (SI-SNR against the
    references of data_dir) and the flat wav.scp / ref.scp / text keyed <utt>_spk<n>."""
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    estimates = [read_kv(path) for path in _speaker_files(output_dir, "spk{}.scp")]
    reference_files = _speaker_files(data_dir, "spk{}.scp")
    if reference_files:
        permutation = permutations_of_dirs(data_dir, output_dir, keys)
        write_permutation(output_dir / PERMUTATION_FILE, permutation)
    else:  # no references (an unlabelled set): estimate order is the only order
        permutation = {utt: tuple(range(len(estimates))) for utt in estimates[0]}
    selected = set(estimates[0])
    references = [{k: v for k, v in read_kv(p).items() if k in selected} for p in reference_files]
    transcripts = [{k: v for k, v in read_text(p).items() if k in selected}
                   for p in _speaker_files(data_dir, "text_spk{}")]
    tables = estimate_tables(estimates, permutation, references, transcripts, str(output_dir))
    for name, entries in tables.items():
        write_kv(output_dir / name, entries)
