"""Corpus WER of speaker-pooled transcript files, checked by hand."""
import json

import pytest

from sepalm_espnet.bin.score_wer import main as score_wer_main
from sepalm_espnet.data.kaldi_dir import DataDirError, write_kv
from sepalm_espnet.metrics.report import read_system_metrics
from sepalm_espnet.metrics.wer import corpus_wer, read_wer_summary


@pytest.fixture
def texts(tmp_path):
    files = {
        "ref1": {"u1": "the cat sat on the mat", "u2": "hello world"},  # 6 + 2 words
        "hyp1": {"u1": "The cat sat on a mat.", "u2": "hello"},  # 1 substitution, 1 deletion
        "ref2": {"u1": "a dog ran", "u2": ""},  # 3 + 0 words
        "hyp2": {"u1": "A dog ran in the park!", "u2": "um"},  # 3 insertions; "um" is a filler
    }
    for name, entries in files.items():
        write_kv(tmp_path / name, entries)
    return tmp_path


def test_cli_pools_speakers_into_one_corpus_wer(texts):
    output = texts / "score/wer_summary.json"
    score_wer_main(["--ref", str(texts / "ref1"), str(texts / "ref2"), "--hyp", str(texts / "hyp1"),
                    str(texts / "hyp2"), "--output", str(output)])
    summary = json.loads(output.read_text())
    assert summary == {"wer": pytest.approx(100 * 5 / 11), "errors": 5, "ref_words": 11, "n_utterances": 4,
                       "substitutions": 1, "deletions": 1, "insertions": 3}
    assert read_wer_summary(output) == summary
    assert read_system_metrics(texts / "score")["wer"] == summary["wer"]  # what RESULTS.md shows


def test_named_metric_fills_its_own_column(texts):
    output = texts / "gt/wer_summary.json"
    score_wer_main(["--ref", str(texts / "ref1"), "--hyp", str(texts / "hyp1"), "--output", str(output),
                    "--metric", "wer_gt"])
    metrics = read_system_metrics(texts / "gt")
    assert metrics["wer_gt"] == pytest.approx(100 * 2 / 8) and metrics["wer_gt_errors"] == 2
    assert "wer" not in metrics and "n_utterances" not in metrics


def test_key_file_restricts_every_pair(texts):
    summary = corpus_wer([texts / "ref1", texts / "ref2"], [texts / "hyp1", texts / "hyp2"], ["u1"])
    assert (summary["errors"], summary["ref_words"], summary["n_utterances"]) == (4, 9, 2)


def test_missing_hypothesis_names_the_file(texts):
    write_kv(texts / "short", {"u1": "a dog ran"})
    with pytest.raises(DataDirError, match=r"short: 1 keys missing, e.g. 'u2'"):
        corpus_wer([texts / "ref1", texts / "ref2"], [texts / "hyp1", texts / "short"])
    with pytest.raises(SystemExit, match=r"score_wer: .*short: 1 keys missing"):
        score_wer_main(["--ref", str(texts / "ref2"), "--hyp", str(texts / "short"),
                        "--output", str(texts / "summary.json")])
    assert not (texts / "summary.json").exists()
