import kaldiio
import numpy as np
import pytest

from sepalm_espnet.data.kaldi_dir import read_kv
from sepalm_espnet.synthesizer.token_io import TokenIOError, TokenReader, token_writer, write_tokens


def random_tokens(num_codebooks, num_frames, codebook_size=1024, seed=0):
    return np.random.default_rng(seed).integers(0, codebook_size, (num_codebooks, num_frames))


def test_round_trip_preserves_values(tmp_path):
    tokens = {"utt2": random_tokens(12, 7), "utt1": random_tokens(12, 1, seed=1), "utt3": np.array([[0, 32767]])}
    write_tokens(tmp_path / "t.ark", tmp_path / "t.scp", tokens, codebook_size=32768)
    scp = read_kv(tmp_path / "t.scp")
    assert list(scp) == ["utt1", "utt2", "utt3"] and scp["utt1"].startswith(str((tmp_path / "t.ark").resolve()))
    reader = TokenReader(tmp_path / "t.scp")
    assert len(reader) == 3
    for key, value in tokens.items():
        assert reader[key].dtype == np.int64 and np.array_equal(reader[key], value)
    raw = kaldiio.load_scp(str(tmp_path / "t.scp"))["utt2"]
    assert raw.dtype == np.int16 and raw.shape == (7, 12)


def test_espnet_reads_time_first_long_tokens(tmp_path):
    """ESPnet's collate pads axis 0 and reports its size as the length: frames, not codebooks."""
    from espnet2.train.dataset import ESPnetDataset

    write_tokens(tmp_path / "t.ark", tmp_path / "t.scp", {"utt": random_tokens(12, 7)}, codebook_size=1024)
    _, data = ESPnetDataset([(str(tmp_path / "t.scp"), "codec", "kaldi_ark")])["utt"]
    assert data["codec"].dtype == np.int64 and np.array_equal(data["codec"], random_tokens(12, 7).T)


def test_values_must_fit_int16_and_the_codebook(tmp_path):
    with pytest.raises(TokenIOError, match="int16"):
        write_tokens(tmp_path / "t.ark", tmp_path / "t.scp", {"a": random_tokens(2, 3)}, codebook_size=32769)
    with pytest.raises(TokenIOError, match=r"\[0, 1024\)"):
        write_tokens(tmp_path / "t.ark", tmp_path / "t.scp", {"a": np.array([[1024]])}, codebook_size=1024)
    with pytest.raises(TokenIOError, match=r"\[0, 1024\)"):
        write_tokens(tmp_path / "t.ark", tmp_path / "t.scp", {"a": np.array([[-1]])}, codebook_size=1024)
    with pytest.raises(TokenIOError, match="integer"):
        write_tokens(tmp_path / "t.ark", tmp_path / "t.scp", {"a": np.zeros((2, 3))}, codebook_size=1024)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_output(tmp_path):
    write_tokens(tmp_path / "t.ark", tmp_path / "t.scp", {"old": random_tokens(2, 3)}, codebook_size=1024)
    with pytest.raises(RuntimeError, match="killed"):
        with token_writer(tmp_path / "t.ark", tmp_path / "t.scp", codebook_size=1024) as write:
            write("new", random_tokens(2, 5))
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.ark", "t.scp"]
    assert np.array_equal(TokenReader(tmp_path / "t.scp")["old"], random_tokens(2, 3))


def test_reader_refuses_non_token_entries(tmp_path):
    kaldiio.save_ark(str(tmp_path / "f.ark"), {"a": np.zeros((3, 2), np.float32)}, scp=str(tmp_path / "f.scp"))
    with pytest.raises(TokenIOError, match="int16"):
        TokenReader(tmp_path / "f.scp")["a"]
