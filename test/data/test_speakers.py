import pytest

from sepalm_espnet.bin.speaker_files import main
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, write_kv
from sepalm_espnet.data.speakers import flatten, reorder, unflatten


def test_reorder_follows_the_stored_match():
    refs = [{"a": "a_ref1", "b": "b_ref1"}, {"a": "a_ref2", "b": "b_ref2"}]
    # read_permutation form: estimate index of each reference; b's estimates are swapped.
    out = reorder(refs, {"a": (0, 1), "b": (1, 0)}, "perm")
    assert out == [{"a": "a_ref1", "b": "b_ref2"}, {"a": "a_ref2", "b": "b_ref1"}]


def test_reorder_errors_name_the_utterance():
    with pytest.raises(DataDirError, match="perm: utterance 'a': .* not a permutation"):
        reorder([{"a": "x"}, {"a": "y"}], {"a": (0, 0)}, "perm")
    with pytest.raises(DataDirError, match="utterance 'a' missing from reference speaker 2"):
        reorder([{"a": "x"}, {}], {"a": (1, 0)}, "perm")


def test_flatten_unflatten_round_trip_keeps_empty_values():
    per_speaker = [{"u_1": "hello", "u_2": ""}, {"u_1": "world", "u_2": "x"}]
    flat = flatten(per_speaker)
    assert list(flat) == ["u_1_spk1", "u_1_spk2", "u_2_spk1", "u_2_spk2"]
    assert unflatten(flat, 2, "f") == per_speaker


def test_unflatten_rejects_foreign_keys_and_missing_speakers():
    with pytest.raises(DataDirError, match="f: key 'u' is not"):
        unflatten({"u": "x"}, 2, "f")
    with pytest.raises(DataDirError, match="f: key 'u_spk3'"):
        unflatten({"u_spk3": "x"}, 2, "f")
    with pytest.raises(DataDirError, match="utterance 'u' has no speaker 2 \\('u_spk2'\\)"):
        unflatten({"u_spk1": "x"}, 2, "f")


def test_cli_reorder_then_flatten_then_unflatten(tmp_path):
    write_kv(tmp_path / "r1", {"a": "one", "b": "two"})
    write_kv(tmp_path / "r2", {"a": "three", "b": ""})
    write_kv(tmp_path / "perm", {"a": "2 1", "b": "1 2"})
    main(["reorder", "--permutation", str(tmp_path / "perm"), "--input", str(tmp_path / "r1"),
          str(tmp_path / "r2"), "--output", str(tmp_path / "e1"), str(tmp_path / "e2")])
    assert (tmp_path / "e1").read_text() == "a three\nb two\n"
    main(["flatten", "--input", str(tmp_path / "e1"), str(tmp_path / "e2"), "--output", str(tmp_path / "flat")])
    assert read_kv(tmp_path / "flat", allow_empty_value=True) == {
        "a_spk1": "three", "a_spk2": "one", "b_spk1": "two", "b_spk2": ""}
    main(["unflatten", "--input", str(tmp_path / "flat"), "--output", str(tmp_path / "u1"), str(tmp_path / "u2")])
    assert (tmp_path / "u2").read_text() == (tmp_path / "e2").read_text()
    with pytest.raises(SystemExit, match="speaker_files: .*file not found"):
        main(["flatten", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "x")])
