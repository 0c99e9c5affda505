"""Stage 14: score every system of the manifest (metrics.systems) on every test set, then RESULTS.md.

Inputs of a test set (the flat layout of stage 4: keys `<utt>_spk<n>`, n in reference order, so the
per-estimate dirs of every separator share one ref.scp and text):

- mixtures: `<mixture dir>/wav.scp` (keys `<utt>`);
- references: `<reference dir>/ref.scp` (the clean source matched to each estimate by the
  stored permutation), `text` (its ground-truth transcript, if the corpus has them),
  `permutation` (recorded in the scores);
- the teacher's transcripts of the references: `--teacher_text` (`text_ct`).

A speech system (`separator_only`, `no_aligner`, `sepalm`) is scored into `<dir of path>/score/`:
separation metrics against ref.scp (metrics.separation: metrics.tsv, permutation,
summary.json); with an ASR backend, the transcript of its speech (`text_hyp`) and its WER
against the teacher and the ground truth; with a speaker encoder, SIM against ref.scp (`sim`);
both in speech_summary.json. With `--rtf_archive`, the packed system's RTF in the system's mode
(rtf.json). A transcript system is scored into `<dir of path>/score/<file name>/`:
wer_summary.json with its WER against the teacher and the ground truth and, when a `status`
file lies beside it, the corrector's fallbacks (every status but `parsed`).

Each score directory holds `.done`: the signature of what it was made from (contents of the
input, reference and teacher files, scoring settings) and the files it wrote. A rerun whose
signature matches logs "<score dir> is up to date, skipped" and computes nothing; rtf.json has
its own `.rtf.done`. A system whose input is missing on a test set is logged and shown as "not
scored" in RESULTS.md. The ASR model, the speaker encoder and the packed system are each loaded
at most once per run (per process with `--nj` > 1), and only if something is to be computed
with them.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml
from tqdm import tqdm

from sepalm_espnet.corrector.asr_teacher import (
    ASR_TEACHERS,
    build_asr_teacher,
    count_length_limited,
    status_path,
    transcribe_entries,
    write_transcripts,
)
from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.format import load_mono
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_kv, read_text, write_kv
from sepalm_espnet.data.speakers import SPEAKER_KEY, unflatten
from sepalm_espnet.corrector.generate import DecodeOptions
from sepalm_espnet.metrics import figures, rtf, speech
from sepalm_espnet.slm_ss.inference import STATUS_FILE as SEPARATOR_STATUS_FILE
from sepalm_espnet.metrics.report import (
    METRIC_FILES,
    NotScored,
    Results,
    columns_present,
    read_system_metrics,
    write_results,
)
from sepalm_espnet.metrics.separation import (
    METRICS_FILE,
    PERMUTATION_FILE,
    SUMMARY_FILE,
    read_mono,
    read_permutation,
    score_utterance,
    write_scores,
)
from sepalm_espnet.metrics.speaker import SPEAKER_ENCODERS, build_speaker_encoder
from sepalm_espnet.metrics.systems import (
    PIPELINE_MODES,
    SET_FIELD,
    TRANSCRIPT_MODE,
    System,
    SystemsInputs,
    read_systems,
    reference_template,
)
from sepalm_espnet.metrics.wer import WER_SUMMARY_FILE, corpus_wer
from sepalm_espnet.pipeline import MODES, SepALM, measure_rtf
from sepalm_espnet.zoo import META_NAME, read_meta, resolve_pretrained, supported_modes

logger = logging.getLogger(__name__)

SCORER_VERSION = 1  # part of every signature: bump when a metric changes, so old scores are redone
DONE_FILE = ".done"
RTF_DONE_FILE = ".rtf.done"
HYP_TEXT_FILE = "text_hyp"  # ASR transcript of a speech system's output, flat keys
SIM_FILE = speech.SIM_FILE  # `key sim` per estimate, flat keys
STATUS_FILE = "status"  # beside a transcript: the corrector's `key parsed|fallback_...`
PARSED = "parsed"
# Every file a score is made of: removed before a recompute, so none outlives its inputs.
SCORE_FILES = (METRICS_FILE, PERMUTATION_FILE, SUMMARY_FILE, speech.SPEECH_SUMMARY_FILE, HYP_TEXT_FILE, SIM_FILE,
               WER_SUMMARY_FILE)
# Archive members that change whenever it is repacked, though the system does not.
UNTIMED_MEMBERS = ("README.md", "RESULTS.md")


def _none_if_empty(value: Optional[str]) -> Optional[str]:
    return None if value is None or value.strip().lower() in ("", "none") else value


@dataclass
class ScoringOptions(SystemsInputs):
    """Options of bin/score_systems.py (one --<field> each; the defaults live here only)."""

    teacher_text: Optional[str] = field(default=None, metadata={
        "help": "the teacher's transcripts of the references, flat keys; unset: "
                "<reference_dir>/teacher/text_ct"})
    asr_backend: Optional[str] = field(default=None, metadata={
        "help": f"transcribe output speech for its WER: one of {sorted(ASR_TEACHERS)}; none: no speech WER"})
    asr_model: Optional[str] = field(default=None, metadata={
        "help": "whisper: name or .pt; faster_whisper: CTranslate2 dir"})
    sim_backend: Optional[str] = field(default=None, metadata={
        "help": f"speaker encoder for SIM: one of {sorted(SPEAKER_ENCODERS)}; none: no SIM"})
    sim_model: Optional[str] = field(default=None, metadata={"help": "wavlm: model dir or hub id"})
    device: str = field(default="cpu", metadata={"help": "device of the ASR model, speaker encoder and RTF system"})
    batch_size: int = field(default=8, metadata={"help": "utterances per ASR call"})
    nj: int = field(default=1, metadata={
        "help": "(system, test set) pairs scored at once, each in its own process (the RTF is measured "
                "afterwards, alone)"})
    rtf_archive: Optional[str] = field(default=None, metadata={
        "help": "packed SepALM system (zip or unpacked dir): measure the RTF of every speech mode with it"})
    rtf_corrector_config: Optional[str] = field(default=None, metadata={
        "help": "corrector decoding config (YAML, e.g. zero_shot: true) of the RTF system"})
    rtf_systems: Tuple[str, ...] = field(default=(), metadata={
        "help": "the manifest rows the RTF archive makes (its separator-only, without-aligner and full "
                "system); empty: every separator_only, no_aligner and sepalm row"})
    rtf_utterances: int = field(default=4, metadata={"help": "RTF over this many mixtures of each test set"})
    rtf_seconds: float = field(default=5.0, metadata={"help": "RTF inputs: mixtures cut or looped to this length"})
    output: str = field(default="exp/RESULTS.md", metadata={"help": "the RESULTS.md to write"})
    metadata: Tuple[str, ...] = field(default=(), metadata={"help": "KEY=VALUE lines at the top of RESULTS.md"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("teacher_text", "asr_backend", "asr_model", "sim_backend", "sim_model",
                     "rtf_archive", "rtf_corrector_config"):
            setattr(self, name, _none_if_empty(getattr(self, name)))
        self.metadata = tuple(self.metadata)
        self.rtf_systems = tuple(self.rtf_systems)
        if self.teacher_text is not None and SET_FIELD not in self.teacher_text:
            raise ValueError(f"teacher_text {self.teacher_text!r} has no {SET_FIELD} (it stands for the test set)")
        if self.asr_backend is not None:
            if self.asr_backend not in ASR_TEACHERS:
                raise ValueError(f"asr_backend {self.asr_backend!r}: choose from {sorted(ASR_TEACHERS)} or none")
            if self.asr_model is None:
                raise ValueError(f"asr_backend {self.asr_backend} needs asr_model")
        if self.sim_backend is not None and self.sim_backend not in SPEAKER_ENCODERS:
            raise ValueError(f"sim_backend {self.sim_backend!r}: choose from {sorted(SPEAKER_ENCODERS)} or none")
        if self.rtf_utterances < 1 or self.rtf_seconds <= 0 or self.batch_size < 1 or self.nj < 1:
            raise ValueError("rtf_utterances, batch_size and nj must be at least 1, rtf_seconds positive")
        bad = [item for item in self.metadata if "=" not in item]
        if bad:
            raise ValueError(f"metadata {bad[0]!r}: expected KEY=VALUE")


@dataclass(frozen=True)
class SetInputs:
    """The files of one test set that every system is scored against."""

    test_set: str
    mixtures: Path
    references: Path
    ground_truth: Path
    permutation: Path
    teacher: Path

    @classmethod
    def of(cls, options: ScoringOptions, reference_dir: str, test_set: str) -> "SetInputs":
        refs = Path(reference_dir.replace(SET_FIELD, test_set))
        teacher = options.teacher_text or str(Path(reference_dir) / "teacher" / "text_ct")
        return cls(test_set, Path(options.mixture_dir.replace(SET_FIELD, test_set)) / "wav.scp", refs / "ref.scp",
                   refs / "text", refs / PERMUTATION_FILE, Path(teacher.replace(SET_FIELD, test_set)))


# ----------------------------------------------------------------------------- signatures


def file_digest(path: Optional[PathLike]) -> Optional[str]:
    """sha256 of a file's bytes; None when there is no such file (its appearing changes a signature)."""
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_signature(files: Mapping[str, Optional[Path]], settings: Mapping[str, Any]) -> Dict[str, Any]:
    """What a score is made of: each file's path and content hash, and the settings."""
    return {
        "scorer": SCORER_VERSION,
        "files": {role: None if path is None else {"path": str(path), "sha256": file_digest(path)}
                  for role, path in sorted(files.items())},
        "settings": dict(settings),
    }


def is_up_to_date(score_dir: Path, signature: Mapping[str, Any], done_file: str = DONE_FILE) -> bool:
    """The done file holds this signature and every file it lists is still there."""
    path = score_dir / done_file
    if not path.is_file():
        return False
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.info("%s holds no signature of this scorer (an older run's?): scored again", path)
        return False
    if not isinstance(done, dict) or done.get("signature") != json.loads(json.dumps(signature)):
        return False
    return all((score_dir / name).is_file() for name in done.get("outputs", []))


def mark_done(score_dir: Path, signature: Mapping[str, Any], outputs: Sequence[str],
              done_file: str = DONE_FILE) -> None:
    with atomic_path(score_dir / done_file) as tmp:
        tmp.write_text(json.dumps({"signature": signature, "outputs": sorted(outputs)}, indent=1) + "\n",
                       encoding="utf-8")


def _start(score_dir: Path) -> None:
    """Forget the old score first: a run killed halfway must not look finished."""
    score_dir.mkdir(parents=True, exist_ok=True)
    for name in (DONE_FILE,) + SCORE_FILES:
        (score_dir / name).unlink(missing_ok=True)


def archive_signature(archive: PathLike) -> Dict[str, Any]:
    """The member checksums of a packed system's meta.yaml (not its creation date, card or
    RESULTS.md, which a repack changes): an unchanged system is not timed again."""

    archive = Path(archive)
    try:
        if archive.is_dir():
            meta_text = (archive / META_NAME).read_text(encoding="utf-8")
        else:
            with zipfile.ZipFile(archive) as zf:
                meta_text = zf.read(META_NAME).decode("utf-8")
        meta = yaml.safe_load(meta_text)
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataDirError(f"{archive}: not a packed system with {META_NAME} ({exc})") from exc
    files = meta.get("checksums") if isinstance(meta, dict) else None
    if not isinstance(files, dict):
        raise DataDirError(f"{archive}: {META_NAME} has no checksums")
    return {"files": {name: digest for name, digest in sorted(files.items()) if name not in UNTIMED_MEMBERS}}


# ----------------------------------------------------------------------------- models


class Models:
    """The ASR model, speaker encoder and packed RTF system: each built once, on first use."""

    def __init__(self, options: ScoringOptions):
        self.options = options
        self._teacher = self._encoder = self._rtf_system = None

    def teacher(self):
        if self._teacher is None:
            logger.info("load the ASR model %s %s on %s", self.options.asr_backend, self.options.asr_model,
                        self.options.device)
            self._teacher = build_asr_teacher(self.options.asr_backend, self.options.asr_model, self.options.device)
        return self._teacher

    def encoder(self):
        if self._encoder is None:
            logger.info("load the speaker encoder %s %s on %s", self.options.sim_backend, self.options.sim_model or "",
                        self.options.device)
            self._encoder = build_speaker_encoder(self.options.sim_backend, self.options.sim_model,
                                                  self.options.device)
        return self._encoder

    def rtf_system(self):
        if self._rtf_system is None:
            logger.info("load the packed system %s on %s for its RTF", self.options.rtf_archive, self.options.device)
            self._rtf_system = load_rtf_system(self.options.rtf_archive, self.options.device,
                                                   self.options.rtf_corrector_config)
        return self._rtf_system


# ----------------------------------------------------------------------------- scoring


def _speaker_count(entries: Mapping[str, str], where: PathLike) -> int:
    """N of flat `<utt>_spk<n>` keys (unflatten then checks every utterance has all N)."""
    n_spk = 0
    for key in entries:
        match = SPEAKER_KEY.match(key)
        if match is None:
            raise DataDirError(f"{where}: key '{key}' is not <utterance>_spk<n>")
        n_spk = max(n_spk, int(match["n"]))
    if n_spk == 0:
        raise DataDirError(f"{where}: no entries")
    return n_spk


def _check_same_keys(path: PathLike, keys: Sequence[str], ref_path: PathLike, ref_keys: Sequence[str]) -> None:
    """A system is scored on every reference entry, no more and no fewer."""
    missing = sorted(set(ref_keys) - set(keys))
    extra = sorted(set(keys) - set(ref_keys))
    if missing:
        raise DataDirError(f"{path}: {len(missing)} keys of {ref_path} missing, e.g. '{missing[0]}'")
    if extra:
        raise DataDirError(f"{path}: {len(extra)} keys not in {ref_path}, e.g. '{extra[0]}'")


def _read_at(path: str, fs: int, mixture: str) -> np.ndarray:
    signal, signal_fs = read_mono(path)
    if signal_fs != fs:
        raise AudioError(f"{path}: sample rate {signal_fs} differs from the mixture {mixture} ({fs})")
    return signal


def _separation_scores(label: str, path: Path, estimates: Mapping[str, str], inputs: SetInputs,
                       references: Mapping[str, str]) -> List[Any]:
    """metrics.separation scores of each mixture, estimate n against ref.scp entry n (the
    stored match), with the stored permutation recorded."""
    n_spk = _speaker_count(references, inputs.references)
    ests = unflatten(estimates, n_spk, str(path))
    refs = unflatten(references, n_spk, str(inputs.references))
    mixtures = read_kv(inputs.mixtures)
    utterances = list(refs[0])
    _check_same_keys(inputs.mixtures, list(mixtures), inputs.references, utterances)
    stored = read_permutation(inputs.permutation) if inputs.permutation.is_file() else None
    scores = []
    for utt in tqdm(utterances, desc=f"{label}: separation", unit="mixture"):
        mixture, fs = read_mono(mixtures[utt])
        scored = score_utterance(utt, mixture, [_read_at(refs[n][utt], fs, mixtures[utt]) for n in range(n_spk)],
                                 [_read_at(ests[n][utt], fs, mixtures[utt]) for n in range(n_spk)], fs,
                                 permutation=tuple(range(n_spk)))
        if stored is not None:
            perm = stored.get(utt)
            if perm is None or sorted(perm) != list(range(n_spk)):
                raise DataDirError(f"{inputs.permutation}: utterance '{utt}': no permutation of 1..{n_spk}")
            scored = dataclasses.replace(scored, permutation=tuple(perm))
        scores.append(scored)
    return scores


def _transcribe(teacher: Any, entries: Mapping[str, str], where: PathLike, batch_size: int,
                label: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """asr_teacher.transcribe_entries under one progress bar."""
    with tqdm(total=len(entries), desc=f"{label}: ASR", unit="utt") as bar:
        return transcribe_entries(teacher, {key: entries[key] for key in sorted(entries)}, where, batch_size,
                                  progress=bar.update)


def _similarities(encoder: Any, estimates: Mapping[str, str], path: PathLike, references: Mapping[str, str],
                  ref_path: PathLike, label: str) -> Dict[str, float]:
    """SIM of each estimate with the reference it was matched to (the same flat key)."""
    sims = {}
    for key in tqdm(sorted(estimates), desc=f"{label}: SIM", unit="utt"):
        est = load_mono(estimates[key], f"{path} (key {key})", encoder.sample_rate)
        ref = load_mono(references[key], f"{ref_path} (key {key})", encoder.sample_rate)
        sims[key] = encoder.similarity(est, ref)
    return sims


def _wer_counts(name: str, ref: Path, hyp: Path, keys: Sequence[str]) -> Dict[str, Optional[int]]:
    """speech.py's count names: the speech summary pools them exactly as its JOB merge does."""
    if not ref.is_file():
        return {f"{name}_errors": None, f"{name}_words": None}
    counts = corpus_wer([ref], [hyp], keys)
    return {f"{name}_errors": counts["errors"], f"{name}_words": counts["ref_words"]}


def score_speech_system(label: str, path: Path, score_dir: Path, inputs: SetInputs, models: Models,
                        options: ScoringOptions) -> List[str]:
    """Separation metrics, then (if configured) WER and SIM of a speech system; returns the files written."""
    estimates = read_kv(path)
    references = read_kv(inputs.references)
    _check_same_keys(path, list(estimates), inputs.references, list(references))
    scores = _separation_scores(label, path, estimates, inputs, references)
    write_scores(score_dir, scores)
    outputs = [METRICS_FILE, PERMUTATION_FILE, SUMMARY_FILE]
    counts: Dict[str, Any] = {"n_utterances": len(scores)}  # mixtures, as summary.json counts them
    if options.asr_backend is not None:
        write_transcripts(score_dir / HYP_TEXT_FILE, *_transcribe(models.teacher(), estimates, path,
                                                                  options.batch_size, label))
        outputs += [HYP_TEXT_FILE, status_path(HYP_TEXT_FILE).name]
        counts["n_asr_length_limit"] = count_length_limited(score_dir / HYP_TEXT_FILE)
        keys = sorted(estimates)
        for name, ref in (("wer_teacher", inputs.teacher), ("wer_gt", inputs.ground_truth)):
            if not ref.is_file():
                logger.warning("%s: %s not found: no %s", label, ref, name)
            counts.update(_wer_counts(name, ref, score_dir / HYP_TEXT_FILE, keys))
    if options.sim_backend is not None:
        sims = _similarities(models.encoder(), estimates, path, references, inputs.references, label)
        write_kv(score_dir / SIM_FILE, {key: f"{sim:.4f}" for key, sim in sims.items()})
        outputs.append(SIM_FILE)
        counts.update(sim_sum=sum(sims.values()), sim_count=len(sims))
    separator_status = path.parent / SEPARATOR_STATUS_FILE
    if separator_status.is_file():
        counts["n_separator_capped"] = capped_count(separator_status)
    if options.asr_backend is not None or options.sim_backend is not None or separator_status.is_file():
        speech.write_summary(score_dir, counts)
        outputs.append(speech.SPEECH_SUMMARY_FILE)
    return outputs


def capped_count(separator_status: Path) -> int:
    """Mixtures where any SLM-SS call hit its length cap (`key ok,capped_no_eos,...` per mixture)."""
    return sum(any(status.startswith("capped") for status in value.split(","))
               for value in read_kv(separator_status).values())


def fallback_summary(status: Path, transcripts: Path, keys: Sequence[str]) -> Dict[str, Any]:
    """n_fallbacks (statuses other than `parsed`), fallback_rate (%) and the count of each status."""
    statuses = read_kv(status)
    _check_same_keys(status, list(statuses), transcripts, keys)
    counts = collections.Counter(statuses.values())
    n_fallbacks = sum(n for value, n in counts.items() if value != PARSED)
    return {"n_fallbacks": n_fallbacks, "fallback_rate": 100.0 * n_fallbacks / len(statuses),
            "statuses": dict(sorted(counts.items()))}


def score_transcript_system(label: str, path: Path, score_dir: Path, inputs: SetInputs) -> List[str]:
    """WER of a transcript file against the teacher and the ground truth, and its fallbacks."""
    texts = read_text(path)
    n_spk = _speaker_count(texts, path)
    summary: Dict[str, Any] = {"n_utterances": len(unflatten(texts, n_spk, str(path))[0]), "n_transcripts": len(texts)}
    for name, ref in (("wer_teacher", inputs.teacher), ("wer_gt", inputs.ground_truth)):
        if not ref.is_file():
            logger.warning("%s: %s not found: no %s", label, ref, name)
            summary[name] = None
            continue
        counts = corpus_wer([ref], [path])
        summary[name] = counts.pop("wer")
        counts.pop("n_utterances")
        summary.update({f"{name}_{key}": value for key, value in counts.items()})
    status = path.parent / STATUS_FILE
    if status.is_file():
        summary.update(fallback_summary(status, path, list(texts)))
    summary["n_asr_length_limit"] = count_length_limited(path)  # a Whisper transcript's looping decodings
    with atomic_path(score_dir / WER_SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return [WER_SUMMARY_FILE]


def _signature_of(system: System, path: Path, inputs: SetInputs, options: ScoringOptions) -> Dict[str, Any]:
    files: Dict[str, Optional[Path]] = {
        "input": path,
        # A stage's own .done changes when it redoes its outputs, even into the same file names.
        "input_done": path.parent / DONE_FILE,
        "teacher": inputs.teacher,
        "ground_truth": inputs.ground_truth,
    }
    settings: Dict[str, Any] = {"mode": system.mode}
    if system.mode == TRANSCRIPT_MODE:
        files.update(status=path.parent / STATUS_FILE, asr_status=status_path(path))
    else:
        files.update(references=inputs.references, mixtures=inputs.mixtures, permutation=inputs.permutation,
                     separator_status=path.parent / SEPARATOR_STATUS_FILE,
                     references_done=inputs.references.parent / DONE_FILE)
        settings.update(asr=None if options.asr_backend is None else [options.asr_backend, options.asr_model],
                        sim=None if options.sim_backend is None else [options.sim_backend, options.sim_model])
    return make_signature(files, settings)


def _missing_input(system: System, path: Path, inputs: SetInputs) -> Optional[str]:
    needed = [path] if system.mode == TRANSCRIPT_MODE else [path, inputs.references, inputs.mixtures]
    missing = [str(p) for p in needed if not p.is_file()]
    return f"{', '.join(missing)} not found" if missing else None


def score_system(system: System, inputs: SetInputs, models: Models, options: ScoringOptions) -> Optional[str]:
    """Score one system on one test set unless up to date; returns why it is not scored, or None."""
    path = system.input_path(inputs.test_set)
    missing = _missing_input(system, path, inputs)
    if missing is not None:
        logger.warning("%s: %s: not scored on %s", system.name, missing, inputs.test_set)
        return missing
    score_dir = system.score_dir(inputs.test_set)
    signature = _signature_of(system, path, inputs, options)
    if is_up_to_date(score_dir, signature):
        logger.info("%s is up to date, skipped", score_dir)
        return None
    logger.info("score %s (%s) on %s: %s into %s", system.name, system.mode, inputs.test_set, path, score_dir)
    _start(score_dir)
    label = f"{system.name} / {inputs.test_set}"
    if system.mode == TRANSCRIPT_MODE:
        outputs = score_transcript_system(label, path, score_dir, inputs)
    else:
        outputs = score_speech_system(label, path, score_dir, inputs, models, options)
    mark_done(score_dir, signature, outputs)
    return None


def measure_rtfs(options: ScoringOptions, scored: Sequence[Tuple[System, SetInputs]], models: Models) -> None:
    """rtf.json of every scored speech system: the packed system timed once per (test set, mode)."""
    if options.rtf_archive is None:
        logger.info("no --rtf_archive: no RTF measured (rtf.json of earlier runs is kept)")
        return
    by_mode: Dict[Tuple[str, str], List[Path]] = collections.defaultdict(list)
    set_inputs: Dict[str, SetInputs] = {}
    for system, inputs in scored:
        # An oracle row is made from the references, another system's row by another system:
        # neither gets this archive's RTF (a row keeps the rtf.json it has).
        if system.mode in PIPELINE_MODES and (not options.rtf_systems or system.name in options.rtf_systems):
            by_mode[inputs.test_set, system.mode].append(system.score_dir(inputs.test_set))
            set_inputs[inputs.test_set] = inputs
    if not by_mode:
        return
    archive = archive_signature(options.rtf_archive)
    corrector_config = file_digest(options.rtf_corrector_config)
    if options.rtf_corrector_config and corrector_config is None:
        raise DataDirError(f"{options.rtf_corrector_config}: --rtf_corrector_config not found")
    for (test_set, mode), score_dirs in by_mode.items():
        wav_scp = set_inputs[test_set].mixtures
        signature = make_signature({"mixtures": wav_scp}, {
            "archive": archive, "corrector_config": corrector_config, "mode": mode, "device": options.device,
            "utterances": options.rtf_utterances, "seconds": options.rtf_seconds})
        stale = []
        for score_dir in score_dirs:
            if is_up_to_date(score_dir, signature, RTF_DONE_FILE):
                logger.info("%s is up to date, skipped", score_dir / rtf.RTF_FILE)
            else:
                stale.append(score_dir)
        if not stale:
            continue
        meter = measure_mode(models.rtf_system(), mode, wav_scp, options.rtf_utterances, options.rtf_seconds)
        for score_dir in stale:
            (score_dir / RTF_DONE_FILE).unlink(missing_ok=True)
            meter.write(score_dir / rtf.RTF_FILE)
            mark_done(score_dir, signature, [rtf.RTF_FILE], RTF_DONE_FILE)


def collect_results(systems: Sequence[System], test_sets: Sequence[str],
                    not_scored: Optional[Mapping[Tuple[str, str], str]] = None) -> Results:
    """Every system's metrics per test set; a system without finished scores is NotScored."""
    not_scored = not_scored or {}
    results: Dict[str, Dict[str, Any]] = {}
    for test_set in test_sets:
        rows: Dict[str, Any] = {}
        for system in systems:
            score_dir = system.score_dir(test_set)
            if (system.name, test_set) in not_scored:
                rows[system.name] = NotScored(not_scored[system.name, test_set])
            elif not (score_dir / DONE_FILE).is_file():
                rows[system.name] = NotScored(f"no finished scores in {score_dir}")
            else:
                rows[system.name] = read_system_metrics(score_dir, METRIC_FILES)
        results[test_set] = rows
    return results


def _run_metadata(options: ScoringOptions) -> Dict[str, str]:
    metadata = dict(item.split("=", 1) for item in options.metadata)
    asr = f"{options.asr_backend} {options.asr_model}" if options.asr_backend else "none"
    sim = " ".join(filter(None, (options.sim_backend, options.sim_model))) or "none"
    measured = (f"{options.rtf_archive} ({options.rtf_utterances} mixtures as {options.rtf_seconds:g} s inputs, "
                f"{options.device})" if options.rtf_archive else "not measured")
    metadata.setdefault("scoring", f"WER of output speech: {asr}; SIM: {sim}; RTF: {measured}")
    return metadata


_worker_models: Optional[Models] = None  # one per scoring process: each loads its models once


def _start_worker(options: ScoringOptions, log_level: int) -> None:
    global _worker_models
    logging.basicConfig(level=log_level, format=f"%(asctime)s (%(module)s:%(lineno)d) [{os.getpid()}] %(levelname)s: %(message)s")
    _worker_models = Models(options)


def _score_in_worker(system: System, inputs: SetInputs, options: ScoringOptions) -> Optional[str]:
    return score_system(system, inputs, _worker_models, options)


def _score_in_processes(pairs: Sequence[Tuple[System, SetInputs]], options: ScoringOptions) -> List[Optional[str]]:
    """score_system of every pair in `options.nj` fresh processes (spawned: no state of this one is
    shared); speech systems first, as they take longest. A failure in any is raised here."""
    order = sorted(range(len(pairs)), key=lambda i: not pairs[i][0].is_speech)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(min(options.nj, len(pairs)), mp_context=context,
                                                initializer=_start_worker,
                                                initargs=(options, logging.getLogger().getEffectiveLevel())) as pool:
        futures = {i: pool.submit(_score_in_worker, *pairs[i], options) for i in order}
        return [futures[i].result() for i in range(len(pairs))]


def score_systems(options: ScoringOptions) -> Results:
    """Score every (system, test set) of the manifest that is not up to date, time the packed
    system per mode, and write RESULTS.md; returns the table's contents."""
    systems = read_systems(options.manifest)
    if not systems:
        raise ValueError(f"{options.manifest}: no systems")
    template = reference_template(options.reference_dir, systems, options.manifest)
    unknown = sorted(set(options.rtf_systems) - {system.name for system in systems})
    if unknown:
        raise ValueError(f"--rtf_systems: {unknown[0]!r} is not a system of {options.manifest}")
    models = Models(options)
    pairs = [(system, SetInputs.of(options, template, test_set)) for test_set in options.test_sets
             for system in systems]
    if options.nj > 1 and len(pairs) > 1:
        reasons = _score_in_processes(pairs, options)
    else:
        reasons = [score_system(system, inputs, models, options) for system, inputs in pairs]
    not_scored: Dict[Tuple[str, str], str] = {}
    scored: List[Tuple[System, SetInputs]] = []
    for (system, inputs), reason in zip(pairs, reasons):
        if reason is None:
            scored.append((system, inputs))
        else:
            not_scored[system.name, inputs.test_set] = reason
    measure_rtfs(options, scored, models)
    results = collect_results(systems, options.test_sets, not_scored)
    output = Path(options.output)
    bar_chart = figures.results_bar_chart(results, output.parent / figures.IMAGES_DIR / f"{output.stem}_si_snri.png")
    appendix = figures.figures_section(output, bar_chart, figures.training_curve_images(output.parent))
    write_results(options.output, results, columns_present(results), _run_metadata(options), appendix)
    logger.info("results in %s", options.output)
    return results


def corrector_decode_options(config: Optional[PathLike]) -> Tuple[bool, Dict[str, Any]]:
    """(zero_shot, decoding options) of a corrector decoding config (cor_inference's --config
    YAML), so the RTF is that of the system decoded as the recipe decoded it. Keys that are
    not decoding options (e.g. ngpu) do not change the speed and are logged and left out."""
    if not config:
        return False, {}
    try:
        values = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DataDirError(f"{config}: cannot read the corrector decoding config ({exc})") from exc
    if not isinstance(values, dict):
        raise DataDirError(f"{config}: expected a mapping of option: value")
    zero_shot = bool(values.pop("zero_shot", False))
    known = {f.name for f in dataclasses.fields(DecodeOptions)}
    ignored = sorted(set(values) - known)
    if ignored:
        logger.warning("%s: %s not decoding options, left out of the RTF system", config, ", ".join(ignored))
    return zero_shot, {key: value for key, value in values.items() if key in known}


def load_rtf_system(archive: PathLike, device: str = "cpu", corrector_config: Optional[PathLike] = None,
                    zero_shot: Optional[bool] = None) -> SepALM:
    """The packed SepALM system (pipeline.SepALM), loaded once for every mode to be timed;
    `zero_shot`, unless None, overrides the config's."""
    config_zero_shot, options = corrector_decode_options(corrector_config)
    zero_shot = config_zero_shot if zero_shot is None else zero_shot
    root = resolve_pretrained(archive)
    richest = supported_modes(read_meta(root)["components"])[0]  # a separator-only archive times that mode
    return SepALM.from_pretrained(root, device=device, mode=richest, zero_shot=zero_shot,
                                  corrector_options=DecodeOptions(**options))


def measure_mode(model: SepALM, mode: str, wav_scp: PathLike, utterances: int, seconds: float) -> rtf.RtfMeter:
    """RTF per component of `model` run as `mode` on the scp's first mixtures cut or looped to `seconds`."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    model.mode = mode
    meter = measure_rtf(model, wav_scp, utterances, seconds)
    logger.info("RTF of %s (the first %d mixtures of %s as %.1f s inputs): %s (%s)", mode, utterances, wav_scp,
                seconds, _rate(meter.rtf), ", ".join(f"{name} {_rate(t.rtf)}" for name, t in meter.components.items()))
    return meter


def _rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"
