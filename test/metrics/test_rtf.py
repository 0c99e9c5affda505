"""RTF meter: timed blocks accumulate per component, JSON round trip, JOB merge adds up."""
import json
import time

import pytest

from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.metrics.rtf import RtfMeter, merge_rtf_files


def test_timed_blocks_accumulate_per_component():
    meter = RtfMeter()
    meter.add_input(2.0)
    for _ in range(2):
        with meter.time("separator", 1.0):
            time.sleep(0.02)
    meter.add("aligner", 2.0, 0.5)
    separator = meter.components["separator"]
    assert separator.calls == 2 and separator.audio_s == 2.0 and 0.04 <= separator.compute_s < 1.0
    assert meter.components["aligner"].rtf == 0.25
    assert meter.rtf == pytest.approx((separator.compute_s + 0.5) / 2.0)
    assert RtfMeter().rtf is None


def test_json_round_trip_and_merge(tmp_path):
    first, second = RtfMeter(), RtfMeter()
    first.add_input(5.0)
    first.add("separator", 5.0, 1.0)
    second.add_input(3.0)
    second.add("separator", 3.0, 1.0)
    second.add("corrector", 6.0, 3.0, calls=2)
    first.write(tmp_path / "a/rtf.json")
    second.write(tmp_path / "b/rtf.json")
    assert RtfMeter.read(tmp_path / "a/rtf.json").to_json() == first.to_json()

    merged = merge_rtf_files([tmp_path / "a/rtf.json", tmp_path / "b/rtf.json"], tmp_path / "rtf.json")
    data = json.loads((tmp_path / "rtf.json").read_text())
    assert data["rtf"] == merged.rtf == pytest.approx(5.0 / 8.0)
    assert data["components"]["separator"] == {"audio_s": 8.0, "compute_s": 2.0, "calls": 2, "rtf": 0.25}
    assert data["components"]["corrector"]["calls"] == 2

    (tmp_path / "bad.json").write_text('{"rtf": 1}')
    with pytest.raises(DataDirError, match="bad.json"):
        RtfMeter.read(tmp_path / "bad.json")


def test_corrector_config_and_the_measure_rtf_command(tmp_path, monkeypatch, caplog):
    from sepalm_espnet.bin import measure_rtf
    from sepalm_espnet.scoring import corrector_decode_options

    config = tmp_path / "decode_cor.yaml"
    config.write_text("zero_shot: true\ntop_k: 5\nngpu: 1\n")
    assert corrector_decode_options(config) == (True, {"top_k": 5})
    assert "ngpu not decoding options" in caplog.text
    assert corrector_decode_options(None) == (False, {})
    config.write_text("- a list\n")
    with pytest.raises(DataDirError, match="decode_cor.yaml: expected a mapping"):
        corrector_decode_options(config)

    calls = []
    monkeypatch.setattr(measure_rtf, "load_rtf_system", lambda *a, **k: calls.append(("load", a, k)) or "model")

    def measure_mode(model, mode, wav_scp, utterances, seconds):
        calls.append((mode, utterances, seconds))
        meter = RtfMeter()
        meter.add_input(seconds)
        meter.add("separator", seconds, 1.0)
        return meter

    monkeypatch.setattr(measure_rtf, "measure_mode", measure_mode)
    measure_rtf.main(["--model", "x.zip", "--wav_scp", "wav.scp", "--modes", "separator_only", "sepalm",
                      "--outputs", str(tmp_path / "a/rtf.json"), str(tmp_path / "b/rtf.json"), "--zero_shot"])
    assert calls == [("load", ("x.zip", "cpu", None), {"zero_shot": True}), ("separator_only", 4, 5.0),
                     ("sepalm", 4, 5.0)]  # the defaults are bin/score_systems.py's
    assert RtfMeter.read(tmp_path / "b/rtf.json").rtf == pytest.approx(0.2)
