"""Segmenting long estimates at pauses before the corrector and synthesizer (SepALM pipeline)."""
import numpy as np
import pytest

from sepalm_espnet.pipeline import MODES, SepALM, pause_segments

FS = 16000


def speech_with_pauses(n_bursts, burst_sec=4.0, pause_sec=0.5, seed=0):
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(n_bursts):
        pieces += [0.3 * rng.standard_normal(int(burst_sec * FS)), np.zeros(int(pause_sec * FS))]
    return np.concatenate(pieces).astype(np.float32)


def test_short_input_is_one_segment():
    assert pause_segments(np.ones(FS), FS, max_sec=20) == [(0, FS)]


def test_three_minutes_are_cut_in_pauses_into_bounded_pieces():
    wave = speech_with_pauses(40)  # 180 s: 4 s bursts, 0.5 s pauses
    segments = pause_segments(wave, FS, max_sec=20)
    assert segments[0][0] == 0 and segments[-1][1] == len(wave)
    assert all(end == next_start for (_, end), (next_start, _) in zip(segments, segments[1:]))
    assert all(end - start <= 20 * FS for start, end in segments)
    period = int(4.5 * FS)
    for _, end in segments[:-1]:  # every cut falls inside a pause, not in speech
        assert end % period >= 4 * FS
    assert len(segments) <= 10  # pauses are used well: 180 s / 20 s


def test_speech_without_pauses_is_hard_cut():
    wave = 0.3 * np.random.default_rng(1).standard_normal(50 * FS).astype(np.float32)
    assert pause_segments(wave, FS, max_sec=20) == [(0, 20 * FS), (20 * FS, 40 * FS), (40 * FS, 50 * FS)]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode 'fast'"):
        SepALM(*[None] * 7, mode="fast")
    assert MODES == ("sepalm", "no_aligner", "separator_only")
