import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.data.tts import (
    EVAL_VOICES,
    TRAIN_VOICES,
    TTSError,
    Voice,
    cache_path,
    synthesize,
    synthesize_cached,
)

SENTENCE = "The quick brown fox jumps over the lazy dog."
ALL_VOICES = TRAIN_VOICES + EVAL_VOICES


@pytest.mark.parametrize("voice", ALL_VOICES, ids=lambda voice: voice.speaker_id)
def test_voice_speaks_at_16k(voice, tmp_path):
    speech = synthesize_cached(voice, SENTENCE, 16000, tmp_path)
    assert sf.info(str(cache_path(voice, SENTENCE, 16000, tmp_path))).samplerate == 16000
    assert 1.5 < len(speech) / 16000 < 5.0  # nine words
    assert np.sqrt(np.mean(speech**2)) > 0.01
    # Trimmed: speech starts and ends within the first and last 50 ms.
    frame = 800
    assert np.abs(speech[:frame]).max() > 1e-3 and np.abs(speech[-frame:]).max() > 1e-3


def test_speaker_ids_distinct_and_split_disjoint():
    ids = [voice.speaker_id for voice in ALL_VOICES]
    assert len(set(ids)) == len(ids) >= 8
    assert not {v.speaker_id for v in TRAIN_VOICES} & {v.speaker_id for v in EVAL_VOICES}
    assert all("_" not in speaker and speaker.split() == [speaker] for speaker in ids)


def test_cache_returns_the_same_samples_without_rewriting(tmp_path):
    voice = Voice("espeak-ng", "en-us+m3")
    fresh = synthesize_cached(voice, SENTENCE, 16000, tmp_path)
    path = cache_path(voice, SENTENCE, 16000, tmp_path)
    mtime = path.stat().st_mtime_ns
    cached = synthesize_cached(voice, SENTENCE, 16000, tmp_path)
    assert path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(fresh, cached)


def test_resamples_to_the_requested_rate():
    voice = Voice("flite", "slt")  # native 16 kHz
    at_16k, at_8k = synthesize(voice, SENTENCE, 16000), synthesize(voice, SENTENCE, 8000)
    assert abs(len(at_8k) * 2 - len(at_16k)) < 0.05 * len(at_16k)


def test_missing_engine_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TTSError, match=r"apt-get install flite"):
        synthesize(Voice("flite", "awb"), SENTENCE, 16000)


def test_unknown_engine_is_rejected():
    with pytest.raises(TTSError, match="unknown TTS engine"):
        Voice("festival", "kal")
