import pytest

from sepalm_espnet.bin import g2p as g2p_main
from sepalm_espnet.data.kaldi_dir import DataDirError, read_text, write_kv
from sepalm_espnet.synthesizer.g2p import G2p, TokenList, clean_boundaries, phonemize_text_file


@pytest.fixture(scope="module")
def g2p():
    return G2p()


def test_known_words(g2p):
    cat, hello_world, empty = g2p(["cat", "Hello, world!", ""])
    assert cat == "k æ t"
    assert hello_world.split(" | ")[0] == "h ə l oʊ" and hello_world.count("|") == 1
    assert empty == "|"  # a pause, never an empty phoneme string


def test_one_boundary_between_words_and_no_punctuation(g2p):
    text = "The quick brown fox, jumps over the lazy dog!"
    (phonemes,) = g2p([text])
    assert phonemes.count("|") + 1 == len(text.split())
    assert not set(",.!?") & set(phonemes.split())
    assert all(token == "|" or "|" not in token for token in phonemes.split())


def test_clean_boundaries():
    assert clean_boundaries(["|", "a", "|", "|", "b", "|"]) == ["a", "|", "b"]


def test_token_list_follows_espnet_layout(tmp_path):
    tokens = TokenList.build(["k æ t | k æ t", "d ɑ g"])
    # Most frequent first (k, t, æ twice), ties in code point order.
    assert tokens.tokens == ["<blank>", "<unk>", "k", "t", "æ", "d", "g", "|", "ɑ", "<sos/eos>"]
    tokens.save(tmp_path / "tokens.txt")
    loaded = TokenList.from_file(tmp_path / "tokens.txt")
    assert loaded.tokens == tokens.tokens and len(loaded) == 10
    assert loaded.encode("k æ ʒ | t") == [2, 4, 1, 7, 3]  # ʒ is unknown -> <unk> = 1
    from espnet2.text.token_id_converter import TokenIDConverter

    assert TokenIDConverter(tmp_path / "tokens.txt").tokens2ids("k æ ʒ | t".split()) == [2, 4, 1, 7, 3]
    with pytest.raises(DataDirError, match="special"):
        TokenList(["a", "b"])


def test_text_file_to_phonemes_and_token_list(tmp_path):
    write_kv(tmp_path / "text", {"u2": "the cat", "u1": "", "u3": "a dog"})
    g2p_main.main(["--text", str(tmp_path / "text"), "--output_dir", str(tmp_path)])
    g2p_main.main(["--token_list_from", str(tmp_path / "phonemes"), "--token_list_out", str(tmp_path / "tokens.txt")])
    phonemes = read_text(tmp_path / "phonemes")
    assert list(phonemes) == ["u1", "u2", "u3"] and phonemes["u1"] == "|"
    # ESPnet's text loader (the synthesizer's training data) refuses a line without a value: an
    # empty transcript (e.g. of a silent estimate) stopped stage 10 (test failed before).
    from espnet2.fileio.read_text import read_2columns_text

    assert read_2columns_text(tmp_path / "phonemes")["u1"] == "|"
    assert phonemes["u2"].endswith("| k æ t")
    tokens = TokenList.from_file(tmp_path / "tokens.txt")
    assert tokens.tokens[:2] == ["<blank>", "<unk>"] and tokens.tokens[-1] == "<sos/eos>"
    assert set(tokens.tokens[2:-1]) == set(" ".join(phonemes.values()).split())


def test_phonemize_reports_the_file_of_a_bad_line(tmp_path, g2p):
    (tmp_path / "text").write_text("u1 hello\nu1 again\n", encoding="utf-8")
    with pytest.raises(DataDirError, match="duplicate key"):
        phonemize_text_file(tmp_path / "text", tmp_path / "phn", g2p)
