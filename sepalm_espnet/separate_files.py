"""`sepalm-separate` on files, directories or a wav.scp: every input gets outputs of its own, and
nothing is overwritten or half-checked once the (minutes-long) model loading has started.

Inputs given as files or directories keep their path relative to the folder they share, so
`a/mix.wav` and `b/mix.wav` give `out/a/mix_spk1.wav` and `out/b/mix_spk1.wav`; a single file
gives `out/<name>_spk<n>.wav`. A wav.scp gives `out/wavs/<key>_spk<n>.wav` and the tables.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from tqdm import tqdm

from sepalm_espnet.data.audio import read_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_key_file, select_entries
from sepalm_espnet.pipeline import SepALM, separate_entries, write_speakers

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")  # what soundfile reads (read_audio)
RTF_NAME = "rtf.json"
SCP_TABLES = ("spk", "text_pt_spk", "text_ct_spk", "status_spk")  # as pipeline.separate_entries writes them


class OutputError(DataDirError):
    """An output directory that cannot take the results, or results that already exist."""


@dataclass(frozen=True)
class FileInput:
    path: Path
    name: str  # outputs: <outdir>/<name>_spk<n>.wav and <outdir>/<name>.json


def collect_inputs(inputs: Sequence[PathLike]) -> List[FileInput]:
    """Files and (recursively) the audio files of directories, named by their path relative to
    the folder all inputs share."""
    files, bases = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise OutputError(f"{item}: a directory without audio files ({', '.join(AUDIO_SUFFIXES)})")
            files += found
            bases.append(item.resolve())
        elif item.is_file():
            files.append(item)
            bases.append(item.resolve().parent)
        else:
            raise OutputError(f"{item}: no such file or directory")
    resolved = [path.resolve() for path in files]
    twice = sorted({str(path) for path in resolved if resolved.count(path) > 1})
    if twice:
        raise OutputError(f"{twice[0]}: given more than once")
    base = Path(os.path.commonpath(bases))
    return [FileInput(path, real.relative_to(base).with_suffix("").as_posix()) for path, real in zip(files, resolved)]


def check_outdir(outdir: PathLike) -> None:
    """The output directory exists as a writable directory, or can be created as one."""
    outdir = Path(outdir)
    existing = outdir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"--outdir {outdir}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"--outdir {outdir}: {existing} is not writable")


def existing_outputs(outdir: PathLike, names: Iterable[str], scp_mode: bool) -> List[Path]:
    """Outputs a run for `names` (file names, or scp keys) would write that already exist."""
    outdir = Path(outdir)
    found = []
    for name in names:
        if scp_mode:
            found += sorted((outdir / "wavs").glob(f"{name}_spk*.wav"))
        else:
            found += sorted(outdir.glob(f"{name}_spk*.wav")) + [p for p in [outdir / f"{name}.json"] if p.exists()]
    if scp_mode:
        found += sorted(p for table in SCP_TABLES for p in outdir.glob(f"{table}[0-9]*") if p.is_file())
    return found + [p for p in [outdir / RTF_NAME] if p.exists()]


def separate_files(
    inputs: Sequence[PathLike],
    outdir: PathLike,
    model_src: PathLike,
    wav_scp: Optional[PathLike] = None,
    key_file: Optional[PathLike] = None,
    overwrite: bool = False,
    **model_options,
) -> None:
    """Everything checked (inputs, keys, --outdir, what would be overwritten), then the model
    loaded (only what its mode runs) and every input separated."""
    if bool(inputs) == bool(wav_scp):
        raise OutputError("give audio files or directories, or --wav_scp, not both")
    files = collect_inputs(inputs) if inputs else []
    # Keys become file names: the scp is read (and its keys checked) before the model loads.
    entries = select_entries(wav_scp, read_key_file(key_file)) if wav_scp else {}
    check_outdir(outdir)
    clashes = existing_outputs(outdir, entries if wav_scp else [f.name for f in files], bool(wav_scp))
    if clashes and not overwrite:
        raise OutputError(f"{clashes[0]} exists ({len(clashes)} outputs of this run do): "
                          "choose another --outdir, or --overwrite to replace them")
    outdir = Path(outdir)
    model = SepALM.from_pretrained(model_src, **model_options)
    if wav_scp:
        separate_entries(model, entries, wav_scp, outdir)
    for item in tqdm(files, desc="separate", unit="file", disable=len(files) < 2):
        samples, fs = read_audio(item.path)
        speakers = model.separate(samples, fs)
        written = write_speakers(outdir, item.name, speakers, fs)
        report = [dict(file=str(f), preliminary=s.preliminary, corrected=s.corrected, status=s.status)
                  for f, s in zip(written, speakers)]
        with atomic_path(outdir / f"{item.name}.json") as tmp:
            tmp.write_text(json.dumps({"input": str(item.path), "speakers": report}, indent=2) + "\n")
    model.rtf.write(outdir / RTF_NAME)
