"""G2P of the corrected transcripts (paper §3.4): espeak-ng phonemes through phonemizer.

Token format of the phoneme text files: IPA phones separated by single spaces, words
separated by the boundary token "|", no stress marks, no punctuation:
"Hello, world!" -> "h ə l oʊ | w ɜː l d". Splitting on spaces gives the tokens, so ESPnet's
`token_type: word` reads these files unchanged. Numbers are read out by espeak-ng, so one
written word can become several phoneme words ("23" -> "t w ɛ n t i | θ ɹ iː").

Token lists follow ESPnet's layout (tokenize_text --add_symbol '<blank>:0' '<unk>:1'
'<sos/eos>:-1'): <blank>, <unk>, the tokens by descending count, <sos/eos> last.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from sepalm_espnet.data.kaldi_dir import DataDirError, PathLike, atomic_path, read_text, write_kv

logger = logging.getLogger(__name__)

WORD_BOUNDARY = "|"
BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
# Lines per phonemizer call: bounds memory and paces the progress log (speed barely depends on it).
LINES_PER_CALL = 2000
# phonemizer warns about word-count mismatches that numbers and abbreviations always cause.
phonemizer_logger = logging.getLogger(f"{__name__}.phonemizer")
phonemizer_logger.setLevel(logging.ERROR)


def clean_boundaries(tokens: List[str]) -> List[str]:
    """Drop word boundaries left at the ends or doubled by words that produced no phones."""
    cleaned: List[str] = []
    for token in tokens:
        if token == WORD_BOUNDARY and (not cleaned or cleaned[-1] == WORD_BOUNDARY):
            continue
        cleaned.append(token)
    if cleaned and cleaned[-1] == WORD_BOUNDARY:
        cleaned.pop()
    return cleaned


class G2p:
    """Batched text -> phoneme strings in the module's token format."""

    def __init__(self, language: str = "en-us"):
        from phonemizer.backend import EspeakBackend
        from phonemizer.separator import Separator

        self.backend = EspeakBackend(
            language,
            preserve_punctuation=False,
            with_stress=False,
            language_switch="remove-flags",  # no "(fr)" markers around foreign words
            words_mismatch="ignore",
            logger=phonemizer_logger,
        )
        self.separator = Separator(phone=" ", word=f" {WORD_BOUNDARY} ", syllable=None)

    def __call__(self, texts: Sequence[str]) -> List[str]:
        """A text without phonemes (empty, e.g. the corrector's transcript of a silent estimate)
        becomes WORD_BOUNDARY alone, a pause: every line of a phoneme file then has a value,
        which ESPnet's text loader requires, and training and the pipeline see the same token."""
        phonemized = self.backend.phonemize(list(texts), separator=self.separator, strip=True, njobs=1)
        return [" ".join(clean_boundaries(line.split())) or WORD_BOUNDARY for line in phonemized]


def phonemize_text_file(text_path: PathLike, output_path: PathLike, g2p: G2p,
                        keys: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Kaldi text (all of it, or `keys`: a JOB split) -> phoneme text with the same keys
    (written atomically); returns it."""
    texts = read_text(text_path)
    if keys is not None:
        missing = [key for key in keys if key not in texts]
        if missing:
            raise DataDirError(f"{text_path}: {len(missing)} keys of the split missing, e.g. '{missing[0]}'")
        texts = {key: texts[key] for key in keys}
    keys = list(texts)
    phonemes: Dict[str, str] = {}
    for start in range(0, len(keys), LINES_PER_CALL):
        chunk = keys[start : start + LINES_PER_CALL]
        phonemes.update(zip(chunk, g2p([texts[key] for key in chunk])))
        logger.info("%s: phonemized %d of %d lines", text_path, len(phonemes), len(keys))
    empty = [key for key in keys if not texts[key].strip()]
    if empty:
        logger.info("%s: %d empty lines written as '%s' (a pause)", text_path, len(empty), WORD_BOUNDARY)
    silent = [key for key in keys if texts[key].strip() and phonemes[key] == WORD_BOUNDARY]
    if silent:
        logger.warning("%s: %d non-empty lines gave no phonemes (written as '%s'), e.g. '%s'",
                       text_path, len(silent), WORD_BOUNDARY, silent[0])
    write_kv(output_path, phonemes)
    return phonemes


class TokenList:
    """Phoneme token <-> id table; unknown phonemes become <unk>."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self.token_to_id = {token: index for index, token in enumerate(self.tokens)}
        if len(self.token_to_id) != len(self.tokens):
            duplicates = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise DataDirError(f"token list has duplicate tokens: {duplicates[:5]}")
        missing = [s for s in (BLANK, UNK, SOS_EOS) if s not in self.token_to_id]
        if missing:
            raise DataDirError(f"token list lacks the special tokens {missing}")

    @classmethod
    def build(cls, phoneme_texts: Iterable[str]) -> "TokenList":
        """From the training set's phoneme texts: most frequent first, ties by name."""
        counts = Counter(token for text in phoneme_texts for token in text.split())
        ordered = sorted(counts, key=lambda token: (-counts[token], token))
        return cls([BLANK, UNK, *ordered, SOS_EOS])

    @classmethod
    def from_file(cls, path: PathLike) -> "TokenList":
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        if not all(lines):
            raise DataDirError(f"{path}: empty line in token list")
        return cls(lines)

    def save(self, path: PathLike) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{token}\n" for token in self.tokens), encoding="utf-8")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, phonemes: str) -> List[int]:
        unk = self.token_to_id[UNK]
        return [self.token_to_id.get(token, unk) for token in phonemes.split()]
