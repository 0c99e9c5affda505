import pytest

from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.data.speakers import estimate_tables, flatten, reorder, unflatten


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


def test_estimate_tables_apply_the_permutation_once_in_reference_order():
    estimates = [{"a": "a_est1", "b": "b_est1"}, {"a": "a_est2", "b": "b_est2"}]
    references = [{"a": "a_ref1", "b": "b_ref1"}, {"a": "a_ref2", "b": "b_ref2"}]
    texts = [{"a": "one", "b": "uno"}, {"a": "two", "b": ""}]
    tables = estimate_tables(estimates, {"a": (0, 1), "b": (1, 0)}, references, texts, "perm")
    # b: reference 1 matched estimate 2, so b_spk1 is estimate 2 beside reference 1.
    assert tables["wav.scp"] == {"a_spk1": "a_est1", "a_spk2": "a_est2", "b_spk1": "b_est2", "b_spk2": "b_est1"}
    assert tables["ref.scp"] == {"a_spk1": "a_ref1", "a_spk2": "a_ref2", "b_spk1": "b_ref1", "b_spk2": "b_ref2"}
    assert tables["text"] == {"a_spk1": "one", "a_spk2": "two", "b_spk1": "uno", "b_spk2": ""}
    assert set(estimate_tables(estimates, {"a": (0, 1), "b": (0, 1)}, [], [], "perm")) == {"wav.scp"}


def test_two_separators_with_other_output_orders_share_references_and_keys():
    """Stage 14 scores every system against one separator's ref.scp: with flat files in
    estimate order, a separator whose outputs came in the other order was scored against the
    other speaker (test failed before)."""
    references = [{"a": "a_ref1"}, {"a": "a_ref2"}]
    first = estimate_tables([{"a": "x_for_ref1"}, {"a": "x_for_ref2"}], {"a": (0, 1)}, references, [], "x")
    second = estimate_tables([{"a": "y_for_ref2"}, {"a": "y_for_ref1"}], {"a": (1, 0)}, references, [], "y")
    assert first["ref.scp"] == second["ref.scp"]
    for key, reference in first["ref.scp"].items():
        assert first["wav.scp"][key].endswith(reference[-4:]) and second["wav.scp"][key].endswith(reference[-4:])
    with pytest.raises(DataDirError, match="y: utterance 'a': \\[0, 0\\] is not a permutation"):
        estimate_tables([{"a": "1"}, {"a": "2"}], {"a": (0, 0)}, references, [], "y")


def test_entries_keyed_by_utterance_are_given_to_each_estimate():
    from sepalm_espnet.data.speakers import per_estimate

    mixtures = {"u1": "a.wav", "u2": "b.wav"}
    assert per_estimate(mixtures, ["u2_spk1", "u1_spk2", "u1_spk1"], "wav.scp") == {
        "u1_spk1": "a.wav", "u1_spk2": "a.wav", "u2_spk1": "b.wav"}
    with pytest.raises(DataDirError, match="wav.scp: no entry for 'u3_spk1'"):
        per_estimate(mixtures, ["u3_spk1"], "wav.scp")
