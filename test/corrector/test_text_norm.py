"""One normalisation for every transcript, and the WER built on it."""
import pytest

from sepalm_espnet.corrector.text_norm import normalize_text, wer


@pytest.mark.parametrize(
    "raw, normalized",
    [
        ("He read the book in one evening.", "HE READ THE BOOK IN ONE EVENING"),
        ("Mr. Smith paid twenty-five dollars, um, for colour prints!",
         "MISTER SMITH PAID $25 FOR COLOR PRINTS"),
        ("I'm  gonna\ngo", "I AM GOING TO GO"),
        ("[noise] hello-world (laughs)", "HELLO WORLD"),
        ("  ", ""),
        # No full stop survives: the corrector's prompt ends each transcript with one.
        ("as tightly as the...", "AS TIGHTLY AS THE"),
        ("it is 3.5 metres", "IT IS 3 POINT 5 METERS"),
    ],
)
def test_normalize_text(raw, normalized):
    assert normalize_text(raw) == normalized
    assert normalize_text(normalized) == normalized


def test_wer_counts_errors_over_reference_words():
    refs = {"a": "The cat sat.", "b": "on the mat", "c": ""}
    hyps = {"a": "the cat sat", "b": "on a", "c": "uh extra"}
    # b: one substitution and one deletion; c: "uh" is a filler the normaliser drops, one insertion
    assert wer(refs, hyps) == (3 / 6, 6, 3)


def test_wer_refuses_different_keys_and_names_them():
    only_b_and_c = r"1 keys only in the references \['b'\].*1 keys only in the hypotheses \['c'\]"
    with pytest.raises(ValueError, match=only_b_and_c):
        wer({"a": "x", "b": "y"}, {"a": "x", "c": "y"})


def test_wer_needs_reference_words():
    with pytest.raises(ValueError, match="no words"):
        wer({"a": ""}, {"a": "hello"})
