"""The systems manifest that stage 14 scores (exp/systems.tsv), and where each system's scores go.

Stages 4, 8, 11 and 13 register what they produced, one tab-separated line per system:

    name<TAB>mode<TAB>path

- `name`: the RESULTS.md row (unique in the file);
- `mode`: `separator_only`, `no_aligner`, `sepalm`, `oracle` or `ablation` (speech systems:
  `path` is a flat per-estimate scp, keys `<utt>_spk<n>` in reference order), or `transcript` (`path` is a flat
  Kaldi text of transcripts; a `status` file beside it counts the corrector's fallbacks);
- `path`: holds `{set}`, which stands for each test set name.

Lines starting with `#` are comments. A score directory sits beside the system's input
(`score_dir`): `<dir of path>/score/` for a speech system, `<dir of path>/score/<file name>/`
for a transcript (a corrector's text_pt and text_ct share one directory).

    python -m sepalm_espnet.metrics.systems exp/systems.tsv "SepFormer (x)" separator_only \\
        "exp/sep_x/decode/{set}/wav.scp"
appends (or replaces, by name) one line, as `append_system` does.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path

logger = logging.getLogger(__name__)

PIPELINE_MODES = ("separator_only", "no_aligner", "sepalm")  # as pipeline.MODES: RTF is measured per mode
# Speech made from the references (the oracle ladder's rungs): scored like a system, never timed.
ORACLE_MODE = "oracle"
# Speech of a paper ablation that no packed system runs (e.g. Table 3 (a), re-separation):
# scored like a system, not timed.
ABLATION_MODE = "ablation"
SPEECH_MODES = PIPELINE_MODES + (ORACLE_MODE, ABLATION_MODE)
TRANSCRIPT_MODE = "transcript"
MODES = SPEECH_MODES + (TRANSCRIPT_MODE,)
SET_FIELD = "{set}"
SCORE_DIR = "score"


class ManifestError(DataDirError):
    """A malformed systems manifest; the message names the file and line."""


@dataclass(frozen=True)
class System:
    name: str
    mode: str
    path: str  # template: SET_FIELD stands for the test set
    line: int = 0  # line in the manifest (0: not read from one)

    @property
    def is_speech(self) -> bool:
        return self.mode in SPEECH_MODES

    def input_path(self, test_set: str) -> Path:
        return Path(self.path.replace(SET_FIELD, test_set))

    def score_dir(self, test_set: str) -> Path:
        return score_dir_of(self.mode, self.input_path(test_set))

    def to_line(self) -> str:
        return "\t".join((self.name, self.mode, self.path))


def score_dir_of(mode: str, input_path: PathLike) -> Path:
    """Speech: <dir>/score; transcript: <dir>/score/<file name>, so two texts of one dir don't collide."""
    input_path = Path(input_path)
    if mode == TRANSCRIPT_MODE:
        return input_path.parent / SCORE_DIR / input_path.name
    return input_path.parent / SCORE_DIR


def check_system(name: str, mode: str, path: str, where: str) -> None:
    """Raise ManifestError (prefixed by `where`, e.g. `exp/systems.tsv:3`) if a field is invalid."""
    for field, value in (("name", name), ("path", path)):
        if not value or value != value.strip():
            raise ManifestError(f"{where}: {field} {value!r} is empty or has leading/trailing spaces")
        if "\t" in value or "\n" in value:
            raise ManifestError(f"{where}: {field} {value!r} holds a tab or newline")
    if mode not in MODES:
        raise ManifestError(f"{where}: mode {mode!r} is not one of {', '.join(MODES)}")
    if SET_FIELD not in path:
        raise ManifestError(f"{where}: path {path!r} has no {SET_FIELD} (it stands for the test set)")


def _read_lines(manifest: Path) -> List[str]:
    with open(manifest, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _parse(manifest: Path, lines: Sequence[str]) -> List[System]:
    systems: List[System] = []
    seen: Dict[str, int] = {}
    score_dirs: Dict[Path, System] = {}
    for lineno, line in enumerate(lines, 1):
        where = f"{manifest}:{lineno}"
        if line.startswith("#"):
            continue
        if not line.strip():
            raise ManifestError(f"{where}: empty line")
        fields = line.split("\t")
        if len(fields) != 3:
            raise ManifestError(f"{where}: {len(fields)} tab-separated fields, expected name<TAB>mode<TAB>path")
        name, mode, path = fields
        check_system(name, mode, path, where)
        if name in seen:
            raise ManifestError(f"{where}: system '{name}' is also on line {seen[name]}")
        system = System(name, mode, path, lineno)
        # Two systems scored into one directory would overwrite each other's scores.
        score_dir = system.score_dir(SET_FIELD)
        if score_dir in score_dirs:
            raise ManifestError(f"{where}: '{name}' would be scored into {score_dir}, as line "
                                f"{score_dirs[score_dir].line} ('{score_dirs[score_dir].name}') is")
        seen[name], score_dirs[score_dir] = lineno, system
        systems.append(system)
    return systems


def read_systems(manifest: PathLike) -> List[System]:
    """The manifest's systems in file order; any malformed line is an error naming it."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError(f"{manifest}: file not found (stages 4, 8, 11 and 13 write it)")
    return _parse(manifest, _read_lines(manifest))


def append_system(manifest: PathLike, name: str, mode: str, path: str) -> str:
    """Register a system: 'present' (the same line is there), 'replaced' (its name was there
    with another mode or path, logged) or 'added'. The file is rewritten atomically."""
    manifest = Path(manifest)
    check_system(name, mode, path, f"{manifest}: new line")
    lines = _read_lines(manifest) if manifest.is_file() else []
    systems = _parse(manifest, lines)  # refuse to add to a broken file
    new = System(name, mode, path)
    old = next((s for s in systems if s.name == name), None)
    if old is not None and (old.mode, old.path) == (mode, path):
        return "present"
    if old is not None:
        logger.warning("%s:%d: system '%s' was %s %s, now %s %s", manifest, old.line, name, old.mode, old.path,
                       mode, path)
        lines[old.line - 1] = new.to_line()
        status = "replaced"
    else:
        lines.append(new.to_line())
        status = "added"
    _parse(manifest, lines)  # e.g. a score directory another system already uses
    with atomic_path(manifest) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return status


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("name")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("path", help=f"input of the system, {SET_FIELD} for the test set")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        append_system(args.manifest, args.name, args.mode, args.path)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"systems: {exc}") from exc


if __name__ == "__main__":
    main()


def reference_template(reference_dir: Optional[str], systems: Sequence[System], manifest: PathLike) -> str:
    """`reference_dir` if given, else the directory of the manifest's one separator_only system
    (stage 4's per-estimate dir: ref.scp, text)."""
    if reference_dir is not None:
        return reference_dir
    dirs = sorted({str(Path(s.path).parent) for s in systems if s.mode == "separator_only"})
    if len(dirs) != 1:
        raise ValueError(f"{manifest}: {len(dirs)} separator_only system dirs {dirs}: give --reference_dir")
    logger.info("references: %s (the separator_only system's dir)", dirs[0])
    return dirs[0]


@dataclass
class SystemsInputs:
    """Where a manifest's systems are read from on each test set: stage 14's scoring and its
    pages take these options alike (one --<field> each; the defaults live here only)."""

    manifest: str = field(default="exp/systems.tsv", metadata={
        "help": "systems manifest: name<TAB>mode<TAB>path lines, {set} in path (metrics.systems)"})
    test_sets: Tuple[str, ...] = field(default=("test",), metadata={"help": "test sets"})
    mixture_dir: str = field(default="dump/raw/{set}", metadata={"help": "dir of the mixtures' wav.scp"})
    reference_dir: Optional[str] = field(default=None, metadata={
        "help": "flat separator decode dir with ref.scp, text and permutation, e.g. exp/sep_x/decode/{set}; "
                "unset: the dir of the manifest's separator_only system"})

    def __post_init__(self) -> None:
        if self.reference_dir is not None and self.reference_dir.strip().lower() in ("", "none"):
            self.reference_dir = None
        self.test_sets = tuple(self.test_sets)
        if not self.test_sets or len(set(self.test_sets)) != len(self.test_sets):
            raise ValueError(f"test_sets {list(self.test_sets)}: need at least one, each once")
        for name in ("mixture_dir", "reference_dir"):
            value = getattr(self, name)
            if value is not None and SET_FIELD not in value:
                raise ValueError(f"{name} {value!r} has no {SET_FIELD} (it stands for the test set)")
