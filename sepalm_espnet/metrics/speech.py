"""Scores of output speech (paper §4.3): WER of its Whisper transcript, and speaker similarity.

WER is pooled over all utterances and speakers, against (a) the teacher's transcript of the
clean reference (`text_ct_spk{n}`, already in estimate order) and (b) the ground-truth
`text_spk{k}` of the reference directory, put into estimate order by the stored permutation.
SIM is the mean cosine of speaker embeddings (metrics.speaker) against the matched reference.

Files of a speech score directory (written atomically):

- `text_hyp_spk{n}`: the normalised transcript of output speaker n (estimate order);
- `sim`: `key sim_1 sim_2 ...` per utterance, 4 decimals, estimate order;
- `speech_summary.json`: `wer_teacher`, `wer_gt` (in %), `sim`, `n_utterances`, and the counts
  they come from (`*_errors`, `*_words`, `sim_sum`, `sim_count`) so JOB splits merge exactly.
  A metric that was not computed is null.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from sepalm_espnet.corrector.asr_teacher import AsrTeacher, count_length_limited, transcribe_scp
from sepalm_espnet.corrector.text_norm import wer
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_key_file, read_kv, read_text, write_kv
from sepalm_espnet.data.speakers import reorder
from sepalm_espnet.metrics.separation import read_permutation
from sepalm_espnet.metrics.speaker import SpeakerEncoder, cosine_similarity_scps

SPEECH_SUMMARY_FILE = "speech_summary.json"
SIM_FILE = "sim"
COUNT_KEYS = ("wer_teacher_errors", "wer_teacher_words", "wer_gt_errors", "wer_gt_words", "sim_sum", "sim_count",
              "n_utterances", "n_asr_length_limit", "n_separator_capped")


def hyp_text_name(n: int) -> str:
    return f"text_hyp_spk{n + 1}"


def _pooled(texts: Sequence[Mapping[str, str]]) -> Dict[str, str]:
    """One mapping over (utterance, speaker) so a WER pools every speaker's words."""
    return {f"{key}/spk{n + 1}": text for n, by_key in enumerate(texts) for key, text in by_key.items()}


def ground_truth_in_estimate_order(
    ref_dir: PathLike, permutation: PathLike, keys: Sequence[str], n_spk: int
) -> Optional[List[Dict[str, str]]]:
    """texts[n][key]: ground truth of the reference matched to estimate n; None without text_spk1."""
    ref_dir = Path(ref_dir)
    if not (ref_dir / "text_spk1").is_file():
        return None
    references = [read_text(ref_dir / f"text_spk{k + 1}") for k in range(n_spk)]
    permutations = read_permutation(permutation)
    missing = [key for key in keys if key not in permutations]
    if missing:
        raise DataDirError(f"{permutation}: key '{missing[0]}': no permutation of 1..{n_spk}")
    return reorder(references, {key: permutations[key] for key in keys}, f"{permutation} / {ref_dir}")


def wer_counts(refs: Optional[Sequence[Mapping[str, str]]], hyps: Sequence[Mapping[str, str]], name: str) -> Dict[str, Optional[int]]:
    if refs is None:
        return {f"{name}_errors": None, f"{name}_words": None}
    _, words, errors = wer(_pooled(refs), _pooled(hyps))
    return {f"{name}_errors": errors, f"{name}_words": words}


def summarize_counts(counts: Mapping[str, Any]) -> Dict[str, Any]:
    def rate(name: str) -> Optional[float]:
        errors, words = counts.get(f"{name}_errors"), counts.get(f"{name}_words")
        return None if errors is None or not words else 100.0 * errors / words

    sim = counts["sim_sum"] / counts["sim_count"] if counts.get("sim_count") else None
    return {"wer_teacher": rate("wer_teacher"), "wer_gt": rate("wer_gt"), "sim": sim,
            "n_utterances": counts["n_utterances"], **{key: counts.get(key) for key in COUNT_KEYS}}


def write_summary(out_dir: PathLike, counts: Mapping[str, Any]) -> Dict[str, Any]:
    summary = summarize_counts(counts)
    with atomic_path(Path(out_dir) / SPEECH_SUMMARY_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return summary


def read_speech_summary(score_dir: PathLike) -> Dict[str, Any]:
    path = Path(score_dir) / SPEECH_SUMMARY_FILE
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(summary, dict) or "n_utterances" not in summary:
        raise DataDirError(f"{path}: not a speech summary")
    return summary


def score_speech(
    speech_scps: Sequence[PathLike],
    ref_dir: PathLike,
    permutation: PathLike,
    out_dir: PathLike,
    teacher: Optional[AsrTeacher] = None,
    hyp_texts: Optional[Sequence[PathLike]] = None,
    teacher_texts: Optional[Sequence[PathLike]] = None,
    encoder: Optional[SpeakerEncoder] = None,
    key_file: Optional[PathLike] = None,
    batch_size: int = 8,
) -> Dict[str, Any]:
    """Score output speech `speech_scps[n]` (estimate n+1); returns the summary it writes.

    Transcripts come from `teacher` (written as text_hyp_spk{n}) or, already made, from
    `hyp_texts`; without either there is no WER. Without `encoder` there is no SIM.
    """
    out_dir = Path(out_dir)
    n_spk = len(speech_scps)
    for name, given in (("hyp_texts", hyp_texts), ("teacher_texts", teacher_texts)):
        if given is not None and len(given) != n_spk:
            raise ValueError(f"{len(given)} {name} for {n_spk} speech scps")
    keys = read_key_file(key_file)
    if keys is None:
        keys = list(read_kv(speech_scps[0]))
    keys = sorted(keys)
    hyps: Optional[List[Dict[str, str]]] = None
    if teacher is not None:
        hyps = [transcribe_scp(teacher, scp, out_dir / hyp_text_name(n), key_file, batch_size) for n, scp in enumerate(speech_scps)]
        limited = [count_length_limited(out_dir / hyp_text_name(n)) for n in range(n_spk)]
    elif hyp_texts is not None:
        hyps = []
        for path in hyp_texts:
            texts = read_text(path)
            missing = [key for key in keys if key not in texts]
            if missing:
                raise DataDirError(f"{path}: missing key '{missing[0]}'")
            hyps.append({key: texts[key] for key in keys})
        for n, texts in enumerate(hyps):
            write_kv(out_dir / hyp_text_name(n), texts)
    counts: Dict[str, Any] = {"n_utterances": len(keys)}
    if teacher is not None:
        counts["n_asr_length_limit"] = sum(limited)
    if hyps is not None:
        teacher_refs = None
        if teacher_texts is not None:
            teacher_refs = [read_text(path) for path in teacher_texts]
            teacher_refs = [{key: texts[key] for key in keys if key in texts} for texts in teacher_refs]
        counts.update(wer_counts(teacher_refs, hyps, "wer_teacher"))
        counts.update(wer_counts(ground_truth_in_estimate_order(ref_dir, permutation, keys, n_spk), hyps, "wer_gt"))
    if encoder is not None:
        ref_scps = [Path(ref_dir) / f"spk{k + 1}.scp" for k in range(n_spk)]
        similarities = cosine_similarity_scps(encoder, speech_scps, ref_scps, permutation, key_file)
        write_kv(out_dir / SIM_FILE, {key: " ".join(f"{s:.4f}" for s in sims) for key, sims in similarities.items()})
        counts["sim_sum"] = sum(sum(sims) for sims in similarities.values())
        counts["sim_count"] = sum(len(sims) for sims in similarities.values())
    return write_summary(out_dir, counts)


def merge_speech_scores(split_dirs: Sequence[PathLike], out_dir: PathLike) -> Dict[str, Any]:
    """Pool the counts of JOB splits and join their per-utterance files; a key twice is an error."""
    out_dir = Path(out_dir)
    counts: Dict[str, Any] = {}
    per_utterance: Dict[str, Dict[str, str]] = {}
    seen_in: Dict[str, PathLike] = {}
    for split_dir in split_dirs:
        split_counts = read_speech_summary(split_dir)
        for key in COUNT_KEYS:
            value = split_counts.get(key)
            if key in counts and (counts[key] is None) != (value is None):
                raise DataDirError(f"{split_dir}: {key} is computed in some splits only")
            counts[key] = None if value is None else counts.get(key, 0) + value
        for path in sorted(Path(split_dir).iterdir()):
            if path.name != SIM_FILE and not path.name.startswith("text_hyp_spk"):
                continue
            entries = read_kv(path, allow_empty_value=True)
            merged = per_utterance.setdefault(path.name, {})
            for key, value in entries.items():
                if key in merged:
                    raise DataDirError(f"utterance '{key}' of {path.name} in both {seen_in[path.name + key]} and {split_dir}")
                merged[key] = value
                seen_in[path.name + key] = split_dir
    for name, entries in per_utterance.items():
        write_kv(out_dir / name, entries)
    return write_summary(out_dir, counts)
