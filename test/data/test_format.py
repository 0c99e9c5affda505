import logging
import re

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.format import (
    finish_formatted_dir, format_job, format_shard, load_scp_audio, merge_formatted_dir,
)
from sepalm_espnet.utils.job_outputs import merge_job_outputs
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, write_kv


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
    with pytest.raises(ValueError, match="wav.scp: keys differ from .*wav.scp, e.g. \\['utt1'\\]"):
        merge_formatted_dir(src, out, num_shards=1)


def test_recipe_jobs_then_finish_give_a_checked_dump(tmp_path):
    """Stage 2 as the recipe runs it: format_job per JOB, the job merger, then finish_formatted_dir."""
    src = make_dir(tmp_path, n=3)
    step = tmp_path / "dump"
    write_kv(step / "logdir/keys.1.scp", {"utt0": "", "utt2": ""})
    write_kv(step / "logdir/keys.2.scp", {"utt1": ""})
    for job in (1, 2):
        format_job(src, step / f"logdir/output.{job}", 16000, key_file=step / f"logdir/keys.{job}.scp")
    merge_job_outputs(step, 2)
    finish_formatted_dir(src, step)
    assert list(read_kv(step / "wav.scp")) == ["utt0", "utt1", "utt2"]
    assert read_kv(step / "utt2num_samples").keys() == read_kv(step / "spk1.scp").keys()


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


def sine(path, peak=0.5, fs=16000, subtype="PCM_16", seconds=1.0):
    t = np.arange(int(fs * seconds)) / fs
    sf.write(path, peak * np.sin(2 * np.pi * 440 * t), fs, subtype=subtype)


# -D: without dither, 8-bit quantization of a 0.5 peak is exact (dither adds one 8-bit step).
@pytest.mark.parametrize("sox_opts", ["-D -b 8", "-b 16", "-b 24", "-e signed -b 32",
                                      "-e floating-point"])
def test_pipes_load_with_their_real_sample_format(tmp_path, sox_opts):
    sine(tmp_path / "in.wav")
    data, fs = load_scp_audio(f"sox {tmp_path}/in.wav -t wav {sox_opts} - |", "wav.scp:1")
    assert fs == 16000 and data.shape == (16000,)
    assert abs(np.max(np.abs(data)) - 0.5) < 0.005


def test_pipe_of_flac_and_of_stereo(tmp_path):
    sf.write(tmp_path / "in.wav", np.stack([np.full(800, 0.25), np.full(800, -0.25)], 1), 8000)
    data, fs = load_scp_audio(f"sox {tmp_path}/in.wav -t flac - |", "wav.scp:1")
    assert fs == 8000 and data.shape == (800, 2)
    np.testing.assert_allclose(data[:, 0], 0.25, atol=1e-4)


@pytest.mark.parametrize("command, message", [
    ("false |", r"spk1.scp:3 \(key u3\): command failed \(exit status 1\): false \|"),
    ("echo not audio |", r"spk1.scp:3 \(key u3\): command output is not audio"),
    ("sox nothere.wav -t wav - |", r"spk1.scp:3 \(key u3\): command failed .*nothere.wav"),
])
def test_failing_pipe_names_the_scp_line(command, message):
    with pytest.raises(AudioError, match=message):
        load_scp_audio(command, "spk1.scp:3 (key u3)")


def test_stage2_dumps_8_bit_pipes_at_the_right_level(tmp_path):
    src = make_dir(tmp_path, n=1)  # 0.25 s at 16 kHz
    sine(tmp_path / "s.wav", seconds=0.25)
    write_kv(src / "spk1.scp", {"utt0": f"sox {tmp_path}/s.wav -t wav -D -b 8 - |"})
    out = tmp_path / "out"
    format_shard(src, out, 16000)
    merge_formatted_dir(src, out, num_shards=1)
    data, _ = sf.read(read_kv(out / "spk1.scp")["utt0"])
    assert data.shape == (4000,) and abs(np.max(np.abs(data)) - 0.5) < 0.005


@pytest.mark.parametrize("key", ["../../../x", "{tmp}/abs/x"])
def test_stage2_never_writes_outside_dump_for_a_bad_key(tmp_path, key):
    key = key.format(tmp=tmp_path)  # an absolute key inside tmp_path, in case it is obeyed
    src = make_dir(tmp_path, n=1)
    value = read_kv(src / "wav.scp")["utt0"]
    (src / "wav.scp").write_text(f"{key} {value}\n")
    out = tmp_path / "dump" / "out"
    with pytest.raises(DataDirError, match=f"wav.scp:1: key '{re.escape(key)}' "):
        format_shard(src, out, 16000)
    assert not list(tmp_path.rglob("x.wav"))
    (src / "wav.scp").write_text(f"utt0 {value}\n")
    (tmp_path / "keys").write_text(f"{key}\n")
    with pytest.raises(DataDirError, match=f"keys:1: key '{re.escape(key)}' "):
        format_shard(src, out, 16000, key_file=tmp_path / "keys")
    assert not list(tmp_path.rglob("x.wav"))


def test_stage2_refuses_a_reference_shorter_than_its_mixture(tmp_path):
    src = make_dir(tmp_path, n=2)
    sf.write(read_kv(src / "spk2.scp")["utt1"], np.full(160, 0.1), 16000)  # 10 ms
    out = tmp_path / "out"
    format_shard(src, out, 16000)
    with pytest.raises(DataDirError, match=rf"{out}/spk2.scp:2: 'utt1': 160 samples at 16000 "
                                           rf"Hz, but the mixture {out}/wav.scp:2 has 4000"):
        merge_formatted_dir(src, out, num_shards=1)


def test_stage2_refuses_a_truncated_source_wav(tmp_path):
    src = make_dir(tmp_path, n=1)
    path = read_kv(src / "spk1.scp")["utt0"]
    with open(path, "r+b") as f:
        f.truncate(44 + 2 * 500)
    out = tmp_path / "out"
    with pytest.raises(AudioError, match=rf"spk1.scp:1 \(key utt0\): {path}: the header says "
                                         rf"4000 frames but the file holds 500"):
        format_shard(src, out, 16000)
    assert not (out / "data" / "spk1" / "utt0.wav").exists()
