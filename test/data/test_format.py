import logging

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.format import format_shard, merge_formatted_dir
from sepalm_espnet.data.kaldi_dir import read_kv, write_kv


def make_dir(root, fs=16000, channels=1, n=2, seconds=0.25):
    """A tiny separation data dir whose audio has the given rate and channel count."""
    rng = np.random.default_rng(0)
    src = root / "src"
    (src / "audio").mkdir(parents=True)
    scps = {name: {} for name in ("wav.scp", "spk1.scp", "spk2.scp")}
    for i in range(n):
        key = f"utt{i}"
        for name in scps:
            shape = (int(fs * seconds),) if channels == 1 else (int(fs * seconds), channels)
            path = src / "audio" / f"{key}_{name}.wav"
            sf.write(path, 0.1 * rng.standard_normal(shape), fs, subtype="PCM_16")
            scps[name][key] = str(path)
    for name, entries in scps.items():
        write_kv(src / name, entries)
    write_kv(src / "utt2spk", {k: k for k in scps["wav.scp"]})
    write_kv(src / "spk2utt", {k: k for k in scps["wav.scp"]})
    for name in ("text_spk1", "text_spk2"):
        write_kv(src / name, {k: "HELLO" for k in scps["wav.scp"]})
    return src


def test_resample_and_downmix(tmp_path, caplog):
    src = make_dir(tmp_path, fs=8000, channels=2)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        format_shard(src, out, fs=16000, audio_format="flac")
    merge_formatted_dir(src, out, num_shards=1)
    assert "downmixing 2 channels" in caplog.text
    wavs = read_kv(out / "wav.scp")
    data, fs = sf.read(wavs["utt0"])
    assert fs == 16000 and data.ndim == 1 and wavs["utt0"].endswith(".flac")
    assert read_kv(out / "utt2num_samples") == {"utt0": "4000", "utt1": "4000"}
    assert read_kv(out / "text_spk1")["utt1"] == "HELLO"
    assert not (out / "shards").exists()


def test_unchanged_pcm16_is_copied_sample_exact(tmp_path):
    src = make_dir(tmp_path)
    out = tmp_path / "out"
    format_shard(src, out, fs=16000)
    merge_formatted_dir(src, out, num_shards=1)
    for name in ("wav.scp", "spk1.scp", "spk2.scp"):
        before, _ = sf.read(read_kv(src / name)["utt0"], dtype="int16")
        after, _ = sf.read(read_kv(out / name)["utt0"], dtype="int16")
        np.testing.assert_array_equal(before, after)


def test_shards_merge_and_rerun_skips_finished_audio(tmp_path):
    src = make_dir(tmp_path, n=3)
    out = tmp_path / "out"
    for shard, keys in (("1", ["utt0", "utt1"]), ("2", ["utt2"])):
        write_kv(tmp_path / f"keys.{shard}", {k: "" for k in keys})
        format_shard(src, out, 16000, key_file=tmp_path / f"keys.{shard}", shard_name=shard)
    first = out / "data" / "wav" / "utt0.wav"
    mtime = first.stat().st_mtime_ns
    format_shard(src, out, 16000, key_file=tmp_path / "keys.1", shard_name="1")
    assert first.stat().st_mtime_ns == mtime
    merge_formatted_dir(src, out, num_shards=2)
    assert list(read_kv(out / "spk2.scp")) == ["utt0", "utt1", "utt2"]


def test_missing_shard_key_is_an_error(tmp_path):
    src = make_dir(tmp_path, n=2)
    out = tmp_path / "out"
    write_kv(tmp_path / "keys.1", {"utt0": ""})
    format_shard(src, out, 16000, key_file=tmp_path / "keys.1")
    with pytest.raises(ValueError, match="miss keys"):
        merge_formatted_dir(src, out, num_shards=1)


@pytest.mark.parametrize("bad", ["nan", "empty", "corrupt"])
def test_bad_audio_names_the_file_and_writes_nothing(tmp_path, bad):
    src = make_dir(tmp_path, n=1)
    path = read_kv(src / "spk1.scp")["utt0"]
    if bad == "nan":
        sf.write(path, np.full(100, np.nan), 16000, subtype="FLOAT")
    elif bad == "empty":
        sf.write(path, np.zeros(0), 16000)
    else:
        with open(path, "wb") as f:
            f.write(b"not a wav file")
    out = tmp_path / "out"
    with pytest.raises(AudioError, match=path):
        format_shard(src, out, 16000)
    assert not (out / "data" / "spk1" / "utt0.wav").exists()
    assert not list((out / "data").rglob(".*tmp"))
