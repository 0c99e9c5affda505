"""Score a packed system on any Kaldi data dir, as stage 14 scores the recipe's (`sepalm-evaluate`).

    sepalm-evaluate --model sepalm.zip --data_dirs data/my_test [data/other ...] --outdir exp/eval \\
        --asr_backend faster_whisper --asr_model tools/models/whisper-base-ct2 --sim_backend resemblyzer

A data dir (its name is the test set's) needs wav.scp (mixtures) and spk<n>.scp (references);
text_spk<n> (ground truth) adds the WER against it. Each mode (default: every mode the archive
supports) separates the mixtures into <outdir>/<set>/<mode>/ (wavs/, spk<n>.scp, the flat per-estimate wav.scp and,
when it corrects, the corrector's text_pt, text_ct and status). The separator_only run also
matches its estimates to the references (permutation, ref.scp, text), as stage 4 does: every
mode keeps the separator's speaker order, so one matching serves all rows. With an ASR, the
teacher's transcript of the references is made as stage 5 makes it (separator_only/teacher/
text_ct). Then stage 14's driver scores the rows of <outdir>/systems.tsv into
<outdir>/RESULTS.md, with the same columns (and the archive's RTF per mode).

An outdir holds one evaluation: its .evaluate.json names the archive (by the checksum of its
meta.yaml, which lists every member's) and the data dir (every file's checksum); a rerun with
the same inputs redoes the separation and reuses the up-to-date scores, one with other inputs
is refused before anything is written.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from sepalm_espnet import zoo
from sepalm_espnet.corrector.asr_teacher import build_asr_teacher, transcribe_scp
from sepalm_espnet.corrector.generate import CORRECTED_FILE, PRELIMINARY_FILE, STATUS_FILE
from sepalm_espnet.data.data_dir import validate_data_dir
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, select_entries, write_kv
from sepalm_espnet.data.speakers import flatten
from sepalm_espnet.metrics.systems import SET_FIELD, append_system
from sepalm_espnet.pipeline import MODES, SepALM, separate_entries
from sepalm_espnet.scoring import Results, ScoringOptions, score_systems
from sepalm_espnet.separator.estimates import write_estimate_dir

logger = logging.getLogger(__name__)
MANIFEST = "systems.tsv"
SIGNATURE_FILE = ".evaluate.json"
ROW_NAMES = {zoo.SEPARATOR_ONLY: "separator only", zoo.NO_ALIGNER: "without aligner", zoo.SEPALM: "SepALM"}


@dataclass
class EvaluateOptions:
    """Options of bin/sepalm_evaluate.py; the scoring ones mean what they mean in ScoringOptions."""

    model: Optional[str] = field(default=None, metadata={"help": "packed archive (stage 15) or its unpacked dir"})
    data_dirs: Tuple[str, ...] = field(default=(), metadata={
        "help": "Kaldi data dirs: wav.scp, spk<n>.scp, text_spk<n> if any; each one's name is its test set's"})
    outdir: Optional[str] = field(default=None, metadata={"help": "outputs, systems.tsv and RESULTS.md"})
    modes: Tuple[str, ...] = field(default=(), metadata={
        "help": f"of {list(MODES)}; default: every mode the archive supports (separator_only always runs)"})
    zero_shot: bool = field(default=False, metadata={"help": "corrector without its LoRA adapter (Table 3 h)"})
    asr_backend: Optional[str] = field(default=None, metadata={"help": "as score_systems: none means no WER"})
    asr_model: Optional[str] = field(default=None, metadata={"help": "as score_systems"})
    sim_backend: Optional[str] = field(default=None, metadata={"help": "as score_systems: none means no SIM"})
    sim_model: Optional[str] = field(default=None, metadata={"help": "as score_systems"})
    device: str = field(default="cpu", metadata={"help": "device of the system, the ASR and the speaker encoder"})
    rtf_utterances: int = field(default=4, metadata={"help": "RTF over this many mixtures; 0: no RTF"})

    def __post_init__(self) -> None:
        for name in ("model", "data_dirs", "outdir"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        self.modes, self.data_dirs = tuple(self.modes), tuple(self.data_dirs)
        names = [Path(d).name for d in self.data_dirs]
        if len(set(names)) != len(names):
            raise ValueError(f"data dirs {list(self.data_dirs)}: their names are the test sets', give each once")
        unknown = [mode for mode in self.modes if mode not in MODES]
        if unknown:
            raise ValueError(f"mode {unknown[0]!r}: expected one of {list(MODES)}")
        if self.rtf_utterances < 0:
            raise ValueError("rtf_utterances must be 0 (no RTF) or more")


def modes_to_run(root: Path, asked: Tuple[str, ...]) -> Tuple[str, ...]:
    """The separator first (its matching orders every row), then the other modes asked for."""
    supported = zoo.supported_modes(zoo.read_meta(root)["components"])
    for mode in asked:
        zoo.check_mode(root, mode)  # names what the archive lacks
    chosen = asked or supported
    return (zoo.SEPARATOR_ONLY,) + tuple(mode for mode in MODES if mode in chosen and mode != zoo.SEPARATOR_ONLY)


def run_mode(root: Path, mode: str, options: EvaluateOptions, data_dir: Path, mode_dir: Path) -> None:
    """One mode's outputs in the flat per-estimate layout of the recipe."""
    entries = select_entries(data_dir / "wav.scp", None)
    model = SepALM.from_pretrained(root, device=options.device, mode=mode, zero_shot=options.zero_shot)
    logger.info("%s: %d mixtures of %s into %s", mode, len(entries), data_dir, mode_dir)
    separate_entries(model, entries, data_dir / "wav.scp", mode_dir)
    n_spk = sum(1 for _ in mode_dir.glob("spk*.scp"))
    if mode == zoo.SEPARATOR_ONLY:
        write_estimate_dir(data_dir, mode_dir)
        return
    write_kv(mode_dir / "wav.scp", flatten([read_kv(mode_dir / f"spk{n}.scp") for n in range(1, n_spk + 1)]))
    for flat, per_speaker in ((PRELIMINARY_FILE, "text_pt_spk"), (CORRECTED_FILE, "text_ct_spk"),
                              (STATUS_FILE, "status_spk")):
        tables = [read_kv(mode_dir / f"{per_speaker}{n}", allow_empty_value=True) for n in range(1, n_spk + 1)]
        write_kv(mode_dir / flat, flatten(tables))


def claim_outdir(outdir: Path, root: Path, data_dirs: List[Path]) -> None:
    """Refuse an outdir made from other inputs; else record this evaluation's."""
    signature = {"model": zoo.sha256_file(root / zoo.META_NAME), "data_dirs": {
        str(d.resolve()): {p.name: zoo.sha256_file(p) for p in sorted(d.iterdir()) if p.is_file()} for d in data_dirs}}
    path = outdir / SIGNATURE_FILE
    if outdir.is_dir() and any(outdir.iterdir()):
        if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != signature:
            raise ValueError(f"{outdir}: holds an evaluation of another archive or data dir (see {path}); "
                             "give another --outdir")
        return
    outdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(signature, indent=2) + "\n", encoding="utf-8")


def evaluate(options: EvaluateOptions) -> Results:
    data_dirs, outdir = [Path(d) for d in options.data_dirs], Path(options.outdir)
    for data_dir in data_dirs:  # every problem named (file and line) before a model loads
        validate_data_dir(data_dir)
        if not (data_dir / "spk1.scp").is_file():
            raise DataDirError(f"{data_dir}: no spk1.scp: references are needed to score a system")
    root = zoo.resolve_pretrained(options.model)
    modes = modes_to_run(root, options.modes)
    claim_outdir(outdir, root, data_dirs)
    name = Path(options.model).name
    manifest = outdir / MANIFEST
    reference_dir = outdir / SET_FIELD / zoo.SEPARATOR_ONLY
    teacher_text = reference_dir / "teacher" / CORRECTED_FILE
    teacher = None
    for data_dir in data_dirs:
        set_dir = outdir / data_dir.name
        for mode in modes:
            run_mode(root, mode, options, data_dir, set_dir / mode)
        (set_dir / "mixtures").mkdir(exist_ok=True)
        shutil.copyfile(data_dir / "wav.scp", set_dir / "mixtures" / "wav.scp")
        if options.asr_backend is not None:  # the teacher's transcripts of the references, as stage 5's
            teacher = teacher or build_asr_teacher(options.asr_backend, options.asr_model, options.device)
            transcribe_scp(teacher, set_dir / zoo.SEPARATOR_ONLY / "ref.scp",
                           str(teacher_text).replace(SET_FIELD, data_dir.name))
    for mode in modes:
        template = str(outdir / SET_FIELD / mode)
        append_system(manifest, f"{ROW_NAMES[mode]} ({name})", mode, f"{template}/wav.scp")
        if mode != zoo.SEPARATOR_ONLY:
            for label, text in (("preliminary", PRELIMINARY_FILE), ("corrected", CORRECTED_FILE)):
                append_system(manifest, f"corrector {label}, {mode} ({name})", "transcript", f"{template}/{text}")
    scoring = ScoringOptions(
        manifest=str(manifest), test_sets=tuple(d.name for d in data_dirs),
        mixture_dir=str(outdir / SET_FIELD / "mixtures"),
        reference_dir=str(reference_dir), teacher_text=str(teacher_text), asr_backend=options.asr_backend,
        asr_model=options.asr_model, sim_backend=options.sim_backend, sim_model=options.sim_model,
        device=options.device, rtf_archive=str(root) if options.rtf_utterances and not options.zero_shot else None,
        rtf_utterances=max(1, options.rtf_utterances), output=str(outdir / "RESULTS.md"),
        metadata=(f"model={options.model}", f"data dirs={' '.join(options.data_dirs)}",
                  f"transcriber={options.asr_backend} {options.asr_model}" if options.asr_backend else "transcriber=none"))
    return score_systems(scoring)
