"""Corpus WER of transcript files (stage 14): every speaker's (reference, hypothesis) pair pooled.

Both sides pass through `text_norm.normalize_text`, the toolkit's one normalisation; jiwer
aligns them. Pooling counts errors and reference words over all utterances of all pairs (a
corpus WER, not a mean of per-utterance rates). An utterance missing from a hypothesis file
is an error, never skipped: a system must not look better for transcribing less.

The summary (JSON; in a score directory as WER_SUMMARY_FILE, which RESULTS.md reads): `wer`
(percent), `errors`, `ref_words`, `n_utterances`, `substitutions`, `deletions`, `insertions`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import jiwer

from sepalm_espnet.corrector.text_norm import normalize_text
from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_text

WER_SUMMARY_FILE = "wer_summary.json"  # the name metrics.report.read_system_metrics looks for


def _paired_texts(ref: PathLike, hyp: PathLike, keys: Optional[Sequence[str]]) -> Tuple[List[str], List[str]]:
    refs, hyps = read_text(ref), read_text(hyp)
    if keys is None:
        keys = sorted(refs)
        extra = sorted(set(hyps) - set(refs))
        if extra:
            raise DataDirError(f"{hyp}: {len(extra)} keys not in the references {ref}, e.g. '{extra[0]}'")
    for path, texts in ((ref, refs), (hyp, hyps)):
        missing = [key for key in keys if key not in texts]
        if missing:
            raise DataDirError(f"{path}: {len(missing)} keys missing, e.g. '{missing[0]}'")
    return [refs[key] for key in keys], [hyps[key] for key in keys]


def corpus_wer(
    refs: Sequence[PathLike], hyps: Sequence[PathLike], keys: Optional[Sequence[str]] = None
) -> Dict[str, float]:
    """Pooled WER of hyps[i] against refs[i] (Kaldi texts); `keys` restricts every pair to them."""
    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"need one hypothesis file per reference file, got {len(refs)} and {len(hyps)}")
    ref_texts: List[str] = []
    hyp_texts: List[str] = []
    for ref, hyp in zip(refs, hyps):
        pair_refs, pair_hyps = _paired_texts(ref, hyp, keys)
        ref_texts += [normalize_text(text) for text in pair_refs]
        hyp_texts += [normalize_text(text) for text in pair_hyps]
    counts = jiwer.process_words(ref_texts, hyp_texts)
    ref_words = counts.hits + counts.substitutions + counts.deletions
    if ref_words == 0:
        raise ValueError(f"WER: the references {[str(r) for r in refs]} hold no words")
    errors = counts.substitutions + counts.deletions + counts.insertions
    return {
        "wer": 100.0 * errors / ref_words,
        "errors": errors,
        "ref_words": ref_words,
        "n_utterances": len(ref_texts),
        "substitutions": counts.substitutions,
        "deletions": counts.deletions,
        "insertions": counts.insertions,
    }


def write_wer_summary(path: PathLike, summary: Dict[str, float]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def read_wer_summary(path: PathLike) -> Dict[str, float]:
    """A summary written by score_wer (RESULTS.md's column: metrics.report.TRANSCRIPT_COLUMNS)."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if "wer" not in summary:
        raise DataDirError(f"{path}: not a WER summary (no 'wer')")
    return summary
