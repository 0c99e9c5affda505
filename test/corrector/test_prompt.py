"""The chain-of-thought prompt: the paper's template, token-level loss labels, the answer parser."""
import pytest
import torch

from sepalm_espnet.corrector.prompt import (
    EOA,
    IGNORE_INDEX,
    MalformedOutputError,
    build_prompt,
    encode_prompt,
    label_spans,
    parse_output,
    unit_token,
)
from sepalm_espnet.corrector.tokenizer import add_unit_tokens, train_sentencepiece_tokenizer

UNITS = [12, 45, 7, 45]
PRELIMINARY = "THE CAT SAT ON THE MAP"
CORRECTED = "THE CAT SAT ON THE MAT"
# Paper §3.3, with {speech unit}, {preliminary transcription} and {corrected transcription} filled in.
PAPER_EXAMPLE = (
    "[Human]: Please transcribe the following speech input, and then use the speech input to correct "
    "any errors in the transcribed text. You can do it step by step. This is the input: "
    "<sosp><12><45><7><45><eosp> <eoh>. [SpeechGPT]: Preliminary transcription: THE CAT SAT ON THE MAP. "
    "Corrected transcription: THE CAT SAT ON THE MAT <eoa>."
)


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = train_sentencepiece_tokenizer(
        ["THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "SHE SOLD SEA SHELLS BY THE SHORE"]
    )
    add_unit_tokens(tokenizer, 50)
    return tokenizer


def test_prompt_is_the_paper_template():
    assert build_prompt(UNITS, PRELIMINARY, CORRECTED) == PAPER_EXAMPLE


def test_generation_prefixes_end_where_each_step_starts():
    step_one = build_prompt(UNITS)
    step_two = build_prompt(UNITS, PRELIMINARY)
    assert step_one.endswith("[SpeechGPT]: Preliminary transcription:")
    assert step_two.endswith(f"Preliminary transcription: {PRELIMINARY}. Corrected transcription:")
    assert PAPER_EXAMPLE.startswith(step_one) and PAPER_EXAMPLE.startswith(step_two)


def test_corrected_transcript_needs_the_preliminary_one():
    with pytest.raises(ValueError, match="preliminary"):
        build_prompt(UNITS, corrected=CORRECTED)


def test_transcript_holding_a_prompt_marker_is_refused():
    with pytest.raises(ValueError, match="marker"):
        build_prompt(UNITS, "HELLO <eoa>", CORRECTED)


def test_only_transcript_tokens_carry_loss(tokenizer):
    encoded = encode_prompt(tokenizer, UNITS, PRELIMINARY, CORRECTED)
    ids, labels = encoded.input_ids, encoded.labels
    assert len(ids) == len(labels) and ids[0] == tokenizer.bos_token_id
    # Token by token: a label is either the token itself or ignored.
    for token_id, label in zip(ids, labels):
        assert label in (token_id, IGNORE_INDEX)
    spans = label_spans(torch.tensor([labels]))[0].tolist()
    preliminary = [tid for tid, span in zip(ids, spans) if span == 1]
    corrected = [tid for tid, span in zip(ids, spans) if span == 2]
    # The learned ids are the two transcripts, each with the token that closes it, and nothing else.
    assert tokenizer.decode(preliminary) == PRELIMINARY + "."
    assert tokenizer.decode(corrected) == f"{CORRECTED} {EOA}"
    assert sum(label != IGNORE_INDEX for label in labels) == len(preliminary) + len(corrected)
    # Units and every prompt word are ignored.
    unit_ids = set(tokenizer.convert_tokens_to_ids([unit_token(u) for u in UNITS]))
    assert all(label not in unit_ids for label in labels)
    assert spans.index(2) > max(i for i, span in enumerate(spans) if span == 1) + 1
    # Segment-wise ids are exactly the template text (its closing "." follows <eoa>).
    assert tokenizer.decode(ids, skip_special_tokens=True) + "." == PAPER_EXAMPLE


def test_generation_prefix_ids_prefix_the_training_ids(tokenizer):
    full = encode_prompt(tokenizer, UNITS, PRELIMINARY, CORRECTED)
    for prefix in (encode_prompt(tokenizer, UNITS), encode_prompt(tokenizer, UNITS, PRELIMINARY)):
        assert full.input_ids[: len(prefix.input_ids)] == prefix.input_ids
        assert full.labels[: len(prefix.labels)] == prefix.labels


def test_empty_transcripts_still_learn_their_closing_tokens(tokenizer):
    encoded = encode_prompt(tokenizer, UNITS, "", "")
    spans = label_spans(torch.tensor([encoded.labels]))[0]
    assert (spans == 1).sum() >= 1 and (spans == 2).sum() >= 1


def test_label_spans_refuse_a_third_span():
    labels = torch.tensor([[IGNORE_INDEX, 5, IGNORE_INDEX, 6, IGNORE_INDEX, 7]])
    with pytest.raises(ValueError, match="two"):
        label_spans(labels)


@pytest.mark.parametrize(
    "answer, expected",
    [
        (PAPER_EXAMPLE.split("[SpeechGPT]: ", 1)[1], (PRELIMINARY, CORRECTED)),
        ("Preliminary transcription: A B. Corrected transcription: A C <eoa>", ("A B", "A C")),
        ("Preliminary transcription:  A  B .Corrected transcription:A C<eoa>.\n", ("A B", "A C")),
        ("Preliminary transcription: . Corrected transcription: <eoa>", ("", "")),
        ("Preliminary transcription: 3.5 M. Corrected transcription: 3.5 M <eoa>", ("3.5 M", "3.5 M")),
    ],
)
def test_parse_output_reads_well_formed_answers(answer, expected):
    assert parse_output(answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "THE CAT SAT ON THE MAT",
        "Preliminary transcription: A B. Corrected transcription: A C",  # ran away: no <eoa>
        "Preliminary transcription: A B <eoa>",  # no corrected transcription
        "Corrected transcription: A C <eoa>",  # no preliminary transcription
        "Preliminary transcription: A B. Corrected transcription: A C <eoa> D",  # text after <eoa>
        "Preliminary transcription: A. Corrected transcription: B <eoa> C <eoa>",
        "Preliminary transcription: A. Corrected transcription: Preliminary transcription: B <eoa>",
    ],
)
def test_parse_output_refuses_malformed_answers(answer):
    with pytest.raises(MalformedOutputError):
        parse_output(answer)
