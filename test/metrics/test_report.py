import pytest

from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.metrics.report import SEPARATION_COLUMNS, Column, write_results
from sepalm_espnet.metrics.separation import UtteranceScores, read_summary, write_scores

METADATA = {"date": "2025-01-31", "config": "conf/tuning/sepalm_ar.yaml", "model": "exp/sepalm_ar"}


def summary(si_snri, sdri, pesqi, estoii, n):
    return {"si_snri": si_snri, "sdri": sdri, "pesqi": pesqi, "estoii": estoii, "n_utterances": n}


def test_one_table_per_test_set_with_a_row_per_system(tmp_path):
    results = {
        "test": {
            "sepformer": summary(13.21, 13.84, 0.671, 0.2114, 3000),
            "sepalm_ar": summary(17.4, 17.9, 1.15, 0.46, 3000),
        },
        "test_musan": {"sepformer": summary(9.1, 9.5, 0.5, 0.2, 1500)},
    }
    write_results(tmp_path / "RESULTS.md", results, SEPARATION_COLUMNS, METADATA)
    text = (tmp_path / "RESULTS.md").read_text()
    header = "| system | SI-SNRi (dB) | SDRi (dB) | PESQi | ESTOIi | N |"
    assert text.startswith(
        "# RESULTS\n\n- date: 2025-01-31\n- config: conf/tuning/sepalm_ar.yaml\n"
    )
    assert "- model: exp/sepalm_ar\n" in text
    assert (
        "## test\n\n" + header + "\n|---|---:|---:|---:|---:|---:|\n"
        "| sepformer | 13.21 | 13.84 | 0.67 | 0.211 | 3000 |\n"
        "| sepalm_ar | 17.40 | 17.90 | 1.15 | 0.460 | 3000 |\n"
    ) in text
    assert "## test_musan\n\n" + header in text
    assert text.index("## test\n") < text.index("## test_musan\n")
    assert text.endswith("| sepformer | 9.10 | 9.50 | 0.50 | 0.200 | 1500 |\n")


def test_later_stages_add_columns_and_systems_without_rewriting(tmp_path):
    columns = SEPARATION_COLUMNS + (Column("wer", "WER (%)"), Column("rtf", "RTF", "{:.3f}"))
    results = {
        "test": {
            "sepformer": summary(13.2, 13.8, 0.67, 0.21, 3000),
            "sepalm_mask": {**summary(17.6, 18.2, 1.19, 0.47, 3000), "wer": 4.03, "rtf": 1.9123},
        }
    }
    write_results(tmp_path / "RESULTS.md", results, columns, METADATA)
    lines = (tmp_path / "RESULTS.md").read_text().splitlines()
    assert "| system | SI-SNRi (dB) | SDRi (dB) | PESQi | ESTOIi | N | WER (%) | RTF |" in lines
    assert "| sepformer | 13.20 | 13.80 | 0.67 | 0.210 | 3000 | - | - |" in lines
    assert "| sepalm_mask | 17.60 | 18.20 | 1.19 | 0.470 | 3000 | 4.03 | 1.912 |" in lines


def test_score_dir_summary_feeds_the_report_and_rewrites_atomically(tmp_path):
    metrics = {"si_snr": 12.0, "si_snri": 11.5, "sdr": 12.5, "sdri": 12.25, "pesq": float("nan"),
               "pesqi": float("nan"), "estoi": 0.8, "estoii": 0.3}
    write_scores(tmp_path / "score", [UtteranceScores("utt1", (0, 1), metrics)])
    path = tmp_path / "RESULTS.md"
    path.write_text("stale\n")
    results = {"test": {"sepformer": read_summary(tmp_path / "score")}}
    write_results(path, results, metadata=METADATA)
    assert "| sepformer | 11.50 | 12.25 | - | 0.300 | 1 |" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RESULTS.md", "score"]


def test_make_results_merges_metric_files_and_adds_the_columns_present(tmp_path):
    import json

    from sepalm_espnet.bin import make_results
    from sepalm_espnet.metrics.report import read_system_metrics
    from sepalm_espnet.metrics.rtf import RtfMeter

    metrics = {"si_snr": 12.0, "si_snri": 11.5, "sdr": 12.5, "sdri": 12.25, "pesq": 2.0,
               "pesqi": 0.5, "estoi": 0.8, "estoii": 0.3}
    for system in ("sep", "sepalm"):
        write_scores(tmp_path / system / "test", [UtteranceScores("utt1", (0, 1), metrics)])
    speech = {"wer_teacher": 4.5, "wer_gt": 6.25, "sim": 0.8123, "n_utterances": 1, "wer_gt_errors": 1}
    (tmp_path / "sepalm/test/speech_summary.json").write_text(json.dumps(speech))
    meter = RtfMeter()
    meter.add_input(4.0)
    meter.add("separator", 4.0, 1.0)
    meter.write(tmp_path / "sepalm/test/rtf.json")

    merged = read_system_metrics(tmp_path / "sepalm/test")
    assert merged["si_snri"] == 11.5 and merged["sim"] == 0.8123 and merged["rtf"] == 0.25
    assert "components" not in merged
    with pytest.raises(DataDirError, match="none of summary.json"):
        read_system_metrics(tmp_path / "nowhere")

    # score_wer's summary of the corrector's transcripts, kept in its own directory.
    (tmp_path / "sepalm_wer/test").mkdir(parents=True)
    (tmp_path / "sepalm_wer/test/summary.json").write_text(json.dumps({"wer": 3.25, "n_utterances": 1}))
    out = tmp_path / "RESULTS.md"
    make_results.main(["--output", str(out), "--test_sets", "test", "--system", f"sep={tmp_path}/sep/{{test_set}}",
                       "--system", f"sepalm={tmp_path}/sepalm/{{test_set}}", "--system", f"sepalm={tmp_path}/sepalm_wer/{{test_set}}"])
    lines = out.read_text().splitlines()
    assert ("| system | SI-SNRi (dB) | SDRi (dB) | PESQi | ESTOIi | N | WER (%) | WER (teacher, %) | WER (GT, %) "
            "| SIM | RTF |") in lines
    assert "| sep | 11.50 | 12.25 | 0.50 | 0.300 | 1 | - | - | - | - | - |" in lines
    assert "| sepalm | 11.50 | 12.25 | 0.50 | 0.300 | 1 | 3.25 | 4.50 | 6.25 | 0.812 | 0.250 |" in lines

    make_results.main(["--output", str(out), "--test_sets", "test", "--system", f"sep={tmp_path}/sep/{{test_set}}",
                       "--columns", "si_snri", "speech"])
    assert "| sep | 11.50 | - | - | - | - |" in out.read_text().splitlines()  # WERs, SIM, ASR token-limit hits
    with pytest.raises(SystemExit, match="unknown column 'bogus'"):
        make_results.main(["--output", str(out), "--test_sets", "test", "--system", f"sep={tmp_path}/sep/{{test_set}}",
                           "--columns", "bogus"])
