"""The recipe's one JOB merger: joins every table, and refuses lost, stray or doubled keys."""
import json

import pytest

from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, write_kv
from sepalm_espnet.utils.job_outputs import merge_job_outputs


def make_jobs(step, splits, tables):
    for job, (keys, job_tables) in enumerate(zip(splits, tables), start=1):
        write_kv(step / "logdir" / f"keys.{job}.scp", {key: "x" for key in keys})
        out = step / "logdir" / f"output.{job}"
        out.mkdir(parents=True)
        for name, entries in job_tables.items():
            if name.endswith(".json"):
                (out / name).write_text(json.dumps(entries))
            else:
                write_kv(out / name, entries)
        (out / "tokens.ark").write_bytes(b"data stays in place")


def test_merges_tables_per_mixture_and_per_estimate_and_sums_counts(tmp_path):
    make_jobs(tmp_path, [["a"], ["b"]], [
        {"spk1.scp": {"a": "a1"}, "wav.scp": {"a_spk1": "x", "a_spk2": "y"}, "text": {"a_spk1": "", "a_spk2": "hi"},
         "fallback.json": {"parsed": 1}},
        {"spk1.scp": {"b": "b1"}, "wav.scp": {"b_spk1": "z", "b_spk2": "w"}, "text": {"b_spk1": "yo", "b_spk2": ""},
         "fallback.json": {"parsed": 1, "fallback_teacher": 1}},
    ])
    assert merge_job_outputs(tmp_path, 2) == ["fallback.json", "spk1.scp", "text", "wav.scp"]
    assert read_kv(tmp_path / "spk1.scp") == {"a": "a1", "b": "b1"}
    assert list(read_kv(tmp_path / "wav.scp")) == ["a_spk1", "a_spk2", "b_spk1", "b_spk2"]
    assert read_kv(tmp_path / "text", allow_empty_value=True)["a_spk1"] == ""
    assert json.loads((tmp_path / "fallback.json").read_text()) == {"parsed": 2, "fallback_teacher": 1}
    assert not (tmp_path / "tokens.ark").exists()


@pytest.mark.parametrize("tables, message", [
    ([{"t": {"a": "1"}}, {"t": {"a": "2", "b": "3"}}], "key 'a' is not in its split"),
    ([{"t": {"a": "1"}}, {"t": {}}], "1 key\\(s\\) of its split missing, e.g. 'b'"),
    ([{"t": {"a": "1"}}, {"u": {"b": "1"}}], "output.2: wrote \\['u'\\]"),
])
def test_refuses_stray_missing_keys_and_unequal_outputs(tmp_path, tables, message):
    make_jobs(tmp_path, [["a"], ["b"]], tables)
    with pytest.raises(DataDirError, match=message):
        merge_job_outputs(tmp_path, 2)
    assert not (tmp_path / "t").exists()


def test_a_failed_job_is_named(tmp_path):
    make_jobs(tmp_path, [["a"]], [{"t": {"a": "1"}}])
    with pytest.raises(DataDirError, match="output.2: missing"):
        merge_job_outputs(tmp_path, 2)
