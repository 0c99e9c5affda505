import json
import logging
import math
import re

import numpy as np
import pytest

from sepalm_espnet.bin.score_separation import main
from sepalm_espnet.data.audio import write_audio
from sepalm_espnet.data.kaldi_dir import DataDirError, write_kv
from sepalm_espnet.metrics.separation import (
    UtteranceScores,
    best_permutation,
    merge_score_dirs,
    read_permutation,
    read_scores,
    read_summary,
    score_dirs,
    score_utterance,
    si_snr,
    write_scores,
)

FS = 16000


def voice(f0: float, syllables_per_s: float, seed: int, seconds: float = 1.0) -> np.ndarray:
    """Vibrato harmonics under a syllable-rate envelope: speech-like enough for PESQ's VAD.

    A faint noise floor keeps the SDR filter solve well conditioned, as real recordings do.
    """
    t = np.arange(int(seconds * FS)) / FS
    envelope = np.clip(np.sin(2 * np.pi * syllables_per_s * t + seed), 0, None) ** 2
    pitch = f0 * t * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))
    harmonics = sum(np.sin(2 * np.pi * k * pitch) / k for k in range(1, 15))
    floor = 1e-3 * np.random.default_rng(seed).standard_normal(len(t))
    return 0.1 * envelope * harmonics + floor


@pytest.fixture(scope="module")
def speakers():
    return [voice(140, 3.0, 0), voice(220, 2.3, 1), voice(180, 2.7, 2)]


@pytest.fixture(scope="module")
def noise():
    return 0.02 * np.random.default_rng(10).standard_normal(FS)


def make_dirs(tmp_path, utterances):
    """utterances: key -> (mixture, references, estimates); returns (ref_dir, est_dir)."""
    ref_dir, est_dir, wav_dir = tmp_path / "ref", tmp_path / "est", tmp_path / "wav"
    n_spk = len(next(iter(utterances.values()))[1])
    tables = {name: {} for name in ["wav"] + [f"ref{i}" for i in range(1, n_spk + 1)]
              + [f"est{i}" for i in range(1, n_spk + 1)]}
    for key, (mixture, references, estimates) in utterances.items():
        signals = {"wav": mixture}
        signals.update({f"ref{i}": ref for i, ref in enumerate(references, 1)})
        signals.update({f"est{i}": est for i, est in enumerate(estimates, 1)})
        for name, signal in signals.items():
            path = wav_dir / f"{key}_{name}.wav"
            write_audio(path, signal, FS, subtype="FLOAT")
            tables[name][key] = str(path)
    write_kv(ref_dir / "wav.scp", tables["wav"])
    for i in range(1, n_spk + 1):
        write_kv(ref_dir / f"spk{i}.scp", tables[f"ref{i}"])
        write_kv(est_dir / f"spk{i}.scp", tables[f"est{i}"])
    return ref_dir, est_dir


def test_si_snr_matches_hand_computed_value():
    reference = np.array([1.0, -1.0, 1.0, -1.0])
    estimate = np.array([2.0, -2.0, 2.0, 0.0])
    # zero-mean estimate [1.5, -2.5, 1.5, -0.5]; its projection on the reference is
    # (6 / 4) * reference = [1.5, -1.5, 1.5, -1.5], leaving noise [0, -1, 0, 1]: 10*log10(9 / 2).
    assert si_snr(reference, estimate) == pytest.approx(10 * math.log10(4.5), abs=1e-6)
    assert si_snr(reference, -7.0 * estimate + 3.0) == pytest.approx(10 * math.log10(4.5), abs=1e-6)


def test_silent_estimate_scores_very_low(speakers):
    assert si_snr(speakers[0], np.zeros(FS)) < -60


@pytest.mark.parametrize(
    "estimate_order, expected",
    [((1, 0), (1, 0)), ((0, 1), (0, 1)), ((2, 0, 1), (1, 2, 0)), ((1, 2, 0), (2, 0, 1))],
)
def test_pit_finds_the_estimate_of_each_reference(speakers, noise, estimate_order, expected):
    references = speakers[: len(estimate_order)]
    estimates = [references[i] + 0.5 * noise for i in estimate_order]
    assert best_permutation(references, estimates) == expected


def test_mixture_as_estimate_improves_nothing(speakers, noise):
    mixture = speakers[0] + speakers[1] + noise
    scores = score_utterance("utt", mixture, speakers[:2], [mixture, mixture], FS)
    assert scores.metrics["si_snri"] == 0.0
    assert scores.metrics["pesqi"] == 0.0
    assert scores.metrics["estoii"] == pytest.approx(0.0, abs=1e-9)
    assert scores.metrics["sdri"] == pytest.approx(0.0, abs=1e-3)


def test_perfect_estimate_scores_high(speakers, noise):
    mixture = speakers[0] + speakers[1] + noise
    scores = score_utterance("utt", mixture, speakers[:2], [speakers[1], speakers[0]], FS)
    assert scores.permutation == (1, 0)
    assert scores.metrics["si_snr"] > 60
    assert scores.metrics["sdr"] > 60
    assert scores.metrics["pesq"] > 4.4
    assert scores.metrics["estoi"] > 0.99


def test_cleaner_estimate_improves_every_metric(speakers, noise):
    s1, s2 = speakers[:2]
    mixture = s1 + s2 + noise
    estimates = [s1 + 0.05 * s2 + 0.1 * noise, s2 + 0.05 * s1 + 0.1 * noise]
    scores = score_utterance("utt", mixture, [s1, s2], estimates, FS)
    assert scores.metrics["si_snri"] > 10
    assert scores.metrics["sdri"] > 10
    assert scores.metrics["pesqi"] > 0.5
    assert scores.metrics["estoii"] > 0.2


@pytest.mark.filterwarnings("ignore:Not enough STFT frames")  # pystoi, on the 0.125 s utterance
def test_pesq_failure_is_nan_warned_and_left_out_of_the_mean(speakers, noise, caplog, tmp_path):
    s1, s2 = speakers[:2]
    mixture = s1 + s2 + noise
    good = score_utterance("good", mixture, [s1, s2], [s1, s2], FS)
    with caplog.at_level(logging.WARNING):
        short = score_utterance(
            "short", mixture[:2000], [s1[:2000], s2[:2000]], [s1[:2000], s2[:2000]], FS
        )
    assert "utterance 'short' spk1" in caplog.text
    assert math.isnan(short.metrics["pesq"]) and math.isnan(short.metrics["pesqi"])
    write_scores(tmp_path, [good, short])
    summary = read_summary(tmp_path)
    assert summary["n_utterances"] == 2
    assert summary["n_pesq_failures"] == 1
    assert summary["pesq"] == pytest.approx(good.metrics["pesq"], abs=1e-4)
    mean_si_snr = (good.metrics["si_snr"] + short.metrics["si_snr"]) / 2
    assert summary["si_snr"] == pytest.approx(mean_si_snr, abs=1e-4)


def test_length_mismatch_is_trimmed_and_warned_only_beyond_tolerance(speakers, noise, caplog):
    s1, s2 = speakers[:2]
    mixture = s1 + s2 + noise
    with caplog.at_level(logging.WARNING):
        score_utterance("close", mixture, [s1, s2], [s1[:-16], s2], FS)
        assert "close" not in caplog.text
        scores = score_utterance("far", mixture, [s1, s2], [s1[:-800], s2], FS)
    assert "utterance 'far': lengths differ" in caplog.text
    assert scores.metrics["si_snr"] > 60


def test_permutation_file_records_the_pit_choice(speakers, noise, tmp_path):
    mixture = sum(speakers) + noise
    swapped = [speakers[1], speakers[2], speakers[0]]
    ref_dir, est_dir = make_dirs(
        tmp_path, {"utt_b": (mixture, speakers, swapped), "utt_a": (mixture, speakers, speakers)}
    )
    out_dir = tmp_path / "score"
    write_scores(out_dir, score_dirs(ref_dir, est_dir))
    # Reference spk1 is estimate 3, spk2 is estimate 1, spk3 is estimate 2.
    assert (out_dir / "permutation").read_text() == "utt_a 1 2 3\nutt_b 3 1 2\n"
    assert read_permutation(out_dir / "permutation") == {"utt_a": (0, 1, 2), "utt_b": (2, 0, 1)}
    lines = (out_dir / "metrics.tsv").read_text().splitlines()
    assert lines[0].split("\t") == [
        "key", "perm", "si_snr", "si_snri", "sdr", "sdri", "pesq", "pesqi", "estoi", "estoii"
    ]
    assert [line.split("\t")[:2] for line in lines[1:]] == [["utt_a", "1,2,3"], ["utt_b", "3,1,2"]]


def test_missing_estimate_key_names_the_file_and_key(speakers, noise, tmp_path):
    mixture = speakers[0] + speakers[1] + noise
    ref_dir, est_dir = make_dirs(
        tmp_path, {key: (mixture, speakers[:2], speakers[:2]) for key in ("utt1", "utt2")}
    )
    spk2_scp = est_dir / "spk2.scp"
    write_kv(spk2_scp, {"utt1": str(tmp_path / "wav" / "utt1_est2.wav")})
    with pytest.raises(DataDirError, match=re.escape(f"{spk2_scp}: missing key 'utt2'")):
        score_dirs(ref_dir, est_dir)
    write_kv(spk2_scp, {"utt1": "a.wav", "utt2": "b.wav", "utt3": "c.wav"})
    with pytest.raises(DataDirError, match=re.escape(f"{spk2_scp}: key 'utt3' is not in")):
        score_dirs(ref_dir, est_dir)


def test_split_scoring_then_merge_equals_unsplit(speakers, noise, tmp_path):
    s1, s2 = speakers[:2]
    mixture = s1 + s2 + noise
    ref_dir, est_dir = make_dirs(tmp_path, {
        "utt1": (mixture, [s1, s2], [s2 + 0.1 * noise, s1 + 0.2 * noise]),
        "utt2": (mixture, [s1, s2], [s1 + 0.3 * noise, s2 + 0.1 * noise]),
    })
    dirs = [f"--ref_dir={ref_dir}", f"--est_dir={est_dir}"]
    main(dirs + [f"--out_dir={tmp_path / 'whole'}"])
    for job, key in enumerate(["utt2", "utt1"], 1):
        write_kv(tmp_path / f"keys.{job}.scp", {key: "x.wav"})
        key_file, split_dir = tmp_path / f"keys.{job}.scp", tmp_path / f"split.{job}"
        main(dirs + [f"--key_file={key_file}", f"--out_dir={split_dir}"])
    splits = [str(tmp_path / "split.1"), str(tmp_path / "split.2")]
    main([f"--out_dir={tmp_path / 'merged'}", "--merge_dirs", *splits])
    for name in ("metrics.tsv", "permutation", "summary.json"):
        assert (tmp_path / "merged" / name).read_text() == (tmp_path / "whole" / name).read_text()
    summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert summary["n_utterances"] == 2 and summary["n_pesq_failures"] == 0
    assert [s.key for s in read_scores(tmp_path / "split.1")] == ["utt2"]


def test_merge_rejects_an_utterance_scored_twice(tmp_path):
    scores = [UtteranceScores("utt1", (1, 0), {name: 1.0 for name in (
        "si_snr", "si_snri", "sdr", "sdri", "pesq", "pesqi", "estoi", "estoii")})]
    write_scores(tmp_path / "split.1", scores)
    write_scores(tmp_path / "split.2", scores)
    with pytest.raises(DataDirError, match="'utt1' scored in both .*split.1 and .*split.2"):
        merge_score_dirs([tmp_path / "split.1", tmp_path / "split.2"], tmp_path / "merged")



def test_permutation_only_cli_matches_full_scoring(speakers, noise, tmp_path):
    mixture = sum(speakers) + noise
    swapped = [speakers[2], speakers[0], speakers[1]]
    ref_dir, est_dir = make_dirs(
        tmp_path, {"utt_b": (mixture, speakers, swapped), "utt_a": (mixture, speakers, speakers)}
    )
    full = {s.key: s.permutation for s in score_dirs(ref_dir, est_dir)}
    main(["--ref_dir", str(ref_dir), "--est_dir", str(est_dir),
                "--out_dir", str(tmp_path / "pit"), "--permutation_only"])
    assert read_permutation(tmp_path / "pit" / "permutation") == full == {
        "utt_a": (0, 1, 2), "utt_b": (1, 2, 0)
    }
    assert not (tmp_path / "pit" / "metrics.tsv").exists()


def test_stored_permutation_scores_a_worse_match_than_pit(speakers, noise, tmp_path):
    mixture = sum(speakers) + noise
    ref_dir, est_dir = make_dirs(tmp_path, {"utt": (mixture, speakers, speakers)})
    write_kv(tmp_path / "stored", {"utt": "2 1 3"})  # a stale match: references 1 and 2 swapped
    main(["--ref_dir", str(ref_dir), "--est_dir", str(est_dir), "--out_dir", str(tmp_path / "score"),
          "--permutation", str(tmp_path / "stored")])
    stored = read_scores(tmp_path / "score")[0]
    pit = score_dirs(ref_dir, est_dir)[0]
    assert stored.permutation == (1, 0, 2) and pit.permutation == (0, 1, 2)
    assert stored.metrics["si_snri"] < pit.metrics["si_snri"] - 10


def test_stored_permutation_must_cover_every_utterance(speakers, noise, tmp_path):
    mixture = sum(speakers) + noise
    ref_dir, est_dir = make_dirs(tmp_path, {"utt": (mixture, speakers, speakers)})
    with pytest.raises(DataDirError, match="'utt' has no stored permutation"):
        score_dirs(ref_dir, est_dir, permutations={"other": (0, 1, 2)})
    with pytest.raises(DataDirError, match="not a permutation"):
        score_dirs(ref_dir, est_dir, permutations={"utt": (0, 0, 2)})
