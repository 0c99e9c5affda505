"""The toolkit's one text normalisation, and the WER every stage reports.

Teacher targets, corrector outputs and scoring references all pass through `normalize_text`,
so a WER never counts differences of punctuation, case, spelling variant or number format.
It is Whisper's English normaliser (the one Whisper's own WERs are reported with: no
punctuation, American spelling, numbers as digits, fillers such as "um" removed), then
LibriSpeech-style upper case on one line. Full stops, which the normaliser keeps in decimals
and after trailing ellipses, are spelled out or dropped: the corrector's prompt ends each
transcript with ".", so a transcript must hold none.
"""
from __future__ import annotations

import re
from typing import Mapping, Tuple

import jiwer
from whisper.normalizers import EnglishTextNormalizer

_ENGLISH_NORMALIZER = EnglishTextNormalizer()
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")


def normalize_text(text: str) -> str:
    """Upper-case words separated by single spaces; idempotent, possibly empty."""
    text = _DECIMAL_POINT.sub(" POINT ", _ENGLISH_NORMALIZER(text).upper())
    return " ".join(text.replace(".", " ").split())


def wer(refs: Mapping[str, str], hyps: Mapping[str, str]) -> Tuple[float, int, int]:
    """(word error rate, reference words, errors) over utterances keyed alike, both normalised.

    Different key sets are an error rather than a silent intersection: a missing utterance
    would otherwise make a system look better than it is.
    """
    only_ref = sorted(set(refs) - set(hyps))
    only_hyp = sorted(set(hyps) - set(refs))
    if only_ref or only_hyp:
        raise ValueError(
            f"WER: {len(only_ref)} keys only in the references {only_ref[:3]}, "
            f"{len(only_hyp)} keys only in the hypotheses {only_hyp[:3]}"
        )
    keys = sorted(refs)
    counts = jiwer.process_words(
        [normalize_text(refs[key]) for key in keys], [normalize_text(hyps[key]) for key in keys]
    )
    n_words = counts.hits + counts.substitutions + counts.deletions
    if n_words == 0:
        raise ValueError("WER: the references hold no words")
    errors = counts.substitutions + counts.deletions + counts.insertions
    return errors / n_words, n_words, errors
