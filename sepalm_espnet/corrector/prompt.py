"""The corrector's chain-of-thought prompt (paper §3.3) as text, as token ids with loss labels, and back.

One template, verbatim from the paper:

    [Human]: Please transcribe the following speech input, and then use the speech input to
    correct any errors in the transcribed text. You can do it step by step. This is the input:
    {speech unit} <eoh>. [SpeechGPT]: Preliminary transcription: {preliminary transcription}.
    Corrected transcription: {corrected transcription} <eoa>.

Speech units are SpeechGPT's: `<sosp><12><45><7><eosp>`, one added token per unit.

Only the two transcripts are learned (eq. 5 and 6); the prompt, the units and the fixed phrases
between the transcripts get label -100. Each transcript span also learns the token that closes
it, so that the model knows when to stop: the preliminary span is `{preliminary}.` (normalised
transcripts hold no full stop) and the corrected span is `{corrected} <eoa>`. Generation
therefore runs the chain of thought in two steps, eq. 3 then eq. 4: continue
`build_prompt(units)` up to the first ".", then `build_prompt(units, preliminary)` up to <eoa>.
The template's final "." follows <eoa>, is never generated, and is left out of the token ids.

Ids come from tokenizing each segment on its own and concatenating, never from searching the
text. Every segment but the first starts with a space, so a SentencePiece tokenizer's word
boundary (▁) falls exactly where the segments meet and the concatenation is what the whole
text would tokenize to.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

SOSP = "<sosp>"  # start of speech
EOSP = "<eosp>"  # end of speech
EOH = "<eoh>"  # end of the human turn
EOA = "<eoa>"  # end of the answer: generation stops here
IGNORE_INDEX = -100  # label of tokens that carry no loss (torch's cross-entropy default)

HUMAN_TURN = (
    "[Human]: Please transcribe the following speech input, and then use the speech input to "
    "correct any errors in the transcribed text. You can do it step by step. "
    "This is the input: {units} " + EOH + "."
)
ASSISTANT_TAG = "[SpeechGPT]:"
PRELIMINARY_HEADER = "Preliminary transcription:"
CORRECTED_HEADER = "Corrected transcription:"
TEMPLATE_END = "."  # after <eoa> in the paper's template; text only (see the module docstring)

# Loss spans, numbered as `label_spans` reports them.
PROMPT_SPAN, PRELIMINARY_SPAN, CORRECTED_SPAN = 0, 1, 2

_MARKERS = (PRELIMINARY_HEADER, CORRECTED_HEADER, ASSISTANT_TAG, "[Human]:", EOH, EOA)


class MalformedOutputError(ValueError):
    """A corrector answer that is not `Preliminary transcription: … Corrected transcription: … <eoa>`."""


def unit_token(unit: int) -> str:
    return f"<{unit}>"


def format_units(units: Sequence[int]) -> str:
    """SpeechGPT's speech span: `<sosp><12><45><7><eosp>`."""
    return SOSP + "".join(unit_token(int(u)) for u in units) + EOSP


def _transcript(text: str, what: str) -> str:
    """Single-spaced, so the segment boundary before it stays a plain space."""
    text = " ".join(text.split())
    for marker in _MARKERS:
        if marker in text:
            raise ValueError(f"{what} transcript contains the prompt marker {marker!r}: {text!r}")
    return text


def prompt_segments(
    units: Sequence[int], preliminary: Optional[str] = None, corrected: Optional[str] = None
) -> List[Tuple[str, int]]:
    """(text, span) pieces of the prompt, up to where generation continues.

    No transcripts: the prefix of step I (ends with "Preliminary transcription:"). A preliminary
    transcript: the prefix of step II (ends with "Corrected transcription:"). Both: the
    training sequence, ending with <eoa>.
    """
    if corrected is not None and preliminary is None:
        raise ValueError("a corrected transcript needs its preliminary transcript")
    head = f"{HUMAN_TURN.format(units=format_units(units))} {ASSISTANT_TAG} {PRELIMINARY_HEADER}"
    segments = [(head, PROMPT_SPAN)]
    if preliminary is not None:
        segments.append((f" {_transcript(preliminary, 'preliminary')}.", PRELIMINARY_SPAN))
        segments.append((f" {CORRECTED_HEADER}", PROMPT_SPAN))
    if corrected is not None:
        segments.append((f" {_transcript(corrected, 'corrected')} {EOA}", CORRECTED_SPAN))
    return segments


def build_prompt(
    units: Sequence[int], preliminary: Optional[str] = None, corrected: Optional[str] = None
) -> str:
    """The paper's template filled in; with fewer transcripts, the prefix a generation step continues."""
    text = "".join(segment for segment, _ in prompt_segments(units, preliminary, corrected))
    return text + TEMPLATE_END if corrected is not None else text


@dataclass(frozen=True)
class EncodedPrompt:
    input_ids: List[int]
    labels: List[int]  # the input id where the token is learned, IGNORE_INDEX elsewhere


def encode_prompt(
    tokenizer, units: Sequence[int], preliminary: Optional[str] = None, corrected: Optional[str] = None
) -> EncodedPrompt:
    """Token ids of `prompt_segments` (after the tokenizer's BOS, if it has one) and their labels."""
    input_ids: List[int] = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    labels: List[int] = [IGNORE_INDEX] * len(input_ids)
    for text, span in prompt_segments(units, preliminary, corrected):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids += ids
        labels += ids if span != PROMPT_SPAN else [IGNORE_INDEX] * len(ids)
    return EncodedPrompt(input_ids, labels)


def label_spans(labels: torch.Tensor) -> torch.Tensor:
    """Span of every label position: PRELIMINARY_SPAN, CORRECTED_SPAN or PROMPT_SPAN (no loss).

    Learned tokens form exactly two runs per sequence, the preliminary transcript and then the
    corrected one, separated by "Corrected transcription:", so the runs tell the spans apart
    without any extra tensor.
    """
    learned = labels != IGNORE_INDEX
    previous = torch.nn.functional.pad(learned[:, :-1], (1, 0), value=False)
    run_index = torch.cumsum(learned & ~previous, dim=1) * learned
    if bool((run_index > CORRECTED_SPAN).any()):
        raise ValueError("labels hold more than two learned spans per sequence")
    return run_index


_ANSWER = re.compile(
    rf"\s*{re.escape(PRELIMINARY_HEADER)}(?P<preliminary>.*?)\.\s*{re.escape(CORRECTED_HEADER)}"
    rf"(?P<corrected>.*?){re.escape(EOA)}\s*{re.escape(TEMPLATE_END)}?\s*",
    re.DOTALL,
)


def parse_output(text: str) -> Tuple[str, str]:
    """(preliminary, corrected) of `Preliminary transcription: … Corrected transcription: … <eoa>`.

    The answer is what follows "[SpeechGPT]:" (a step I continuation with PRELIMINARY_HEADER in
    front). Anything else raises MalformedOutputError: an answer without <eoa> ran away, one
    with a marker inside a transcript repeated the template; the caller falls back and counts.
    """
    match = _ANSWER.fullmatch(text)
    if match is None:
        raise MalformedOutputError(
            f"not a '{PRELIMINARY_HEADER} … {CORRECTED_HEADER} … {EOA}' answer: {text[:200]!r}"
        )
    preliminary, corrected = (" ".join(match[name].split()) for name in ("preliminary", "corrected"))
    for transcript in (preliminary, corrected):
        for marker in _MARKERS:
            if marker in transcript:
                raise MalformedOutputError(f"prompt marker {marker!r} inside a transcript: {text[:200]!r}")
    return preliminary, corrected
