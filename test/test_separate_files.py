"""sepalm-separate as a new user meets it: inputs with the same name in different folders, a
directory of audio, a rerun into the same --outdir, a bad --outdir, a separator-only archive."""
import json

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.bin.sepalm_separate import main
from sepalm_espnet.data.kaldi_dir import read_kv
from sepalm_espnet.separate_files import collect_inputs

FS = 16000


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def write_mixture(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(FS // 4).astype(np.float32), FS)
    return path


def separate(archive, *args):
    main([*map(str, args), "--model", str(archive), "--mode", "separator_only", "--log_level", "WARNING"])


def test_same_names_in_different_folders_get_outputs_of_their_own(separator_archive, tmp_path):
    a, b = write_mixture(tmp_path / "in/a/mix.wav", 0), write_mixture(tmp_path / "in/b/mix.wav", 1)
    separate(separator_archive, a, b, "--outdir", tmp_path / "out")
    for name, source in (("a/mix", a), ("b/mix", b)):
        report = json.loads((tmp_path / f"out/{name}.json").read_text())
        assert report["input"] == str(source) and len(report["speakers"]) == 2
        assert sf.info(tmp_path / f"out/{name}_spk2.wav").frames == FS // 4
    assert not np.array_equal(sf.read(tmp_path / "out/a/mix_spk1.wav")[0], sf.read(tmp_path / "out/b/mix_spk1.wav")[0])
    one = write_mixture(tmp_path / "single/x.wav", 2)
    separate(separator_archive, one, "--outdir", tmp_path / "out1")
    assert (tmp_path / "out1/x_spk1.wav").is_file() and (tmp_path / "out1/x.json").is_file()


def test_a_directory_of_audio_is_separated_file_by_file(separator_archive, tmp_path):
    write_mixture(tmp_path / "in/x.wav", 0)
    write_mixture(tmp_path / "in/sub/y.wav", 1)
    (tmp_path / "in/notes.txt").write_text("not audio")
    separate(separator_archive, tmp_path / "in", "--outdir", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.wav")) == [
        "sub/y_spk1.wav", "sub/y_spk2.wav", "x_spk1.wav", "x_spk2.wav"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="empty: a directory without audio files"):
        separate(separator_archive, tmp_path / "empty", "--outdir", tmp_path / "out2")


def test_a_rerun_never_replaces_outputs_without_overwrite(separator_archive, tmp_path):
    mix = write_mixture(tmp_path / "mix.wav", 0)
    separate(separator_archive, mix, "--outdir", tmp_path / "out")
    before = (tmp_path / "out/mix_spk1.wav").stat().st_mtime_ns
    with pytest.raises(SystemExit, match=r"out/mix_spk1.wav exists \(4 outputs of this run do\).*--overwrite"):
        separate(separator_archive, mix, "--outdir", tmp_path / "out")
    assert (tmp_path / "out/mix_spk1.wav").stat().st_mtime_ns == before
    separate(separator_archive, mix, "--outdir", tmp_path / "out", "--overwrite")
    assert (tmp_path / "out/mix_spk1.wav").stat().st_mtime_ns != before

    (tmp_path / "wav.scp").write_text(f"utt1 {mix}\n")
    separate(separator_archive, "--wav_scp", tmp_path / "wav.scp", "--outdir", tmp_path / "batch")
    assert list(read_kv(tmp_path / "batch/spk2.scp")) == ["utt1"]
    with pytest.raises(SystemExit, match="batch/wavs/utt1_spk1.wav exists"):
        separate(separator_archive, "--wav_scp", tmp_path / "wav.scp", "--outdir", tmp_path / "batch")


@pytest.mark.parametrize("outdir", ["file", "file/sub"])
def test_a_bad_outdir_is_refused_before_the_model_loads(tmp_path, outdir):
    mix = write_mixture(tmp_path / "mix.wav", 0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match=f"--outdir {tmp_path / outdir}: {tmp_path / 'file'} is not a directory"):
        separate(tmp_path / "no_model.zip", mix, "--outdir", tmp_path / outdir)  # the model does not even exist


def test_bad_inputs_are_refused_before_the_model_loads(tmp_path):
    mix = write_mixture(tmp_path / "mix.wav", 0)
    with pytest.raises(SystemExit, match="mix.wav: given more than once"):
        separate(tmp_path / "no_model.zip", mix, tmp_path / "." / "mix.wav", "--outdir", tmp_path / "out")
    with pytest.raises(SystemExit, match="missing.wav: no such file or directory"):
        separate(tmp_path / "no_model.zip", tmp_path / "missing.wav", "--outdir", tmp_path / "out")
    with pytest.raises(SystemExit, match="not both"):
        separate(tmp_path / "no_model.zip", mix, "--wav_scp", tmp_path / "wav.scp", "--outdir", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_input_names_follow_the_folder_inputs_share(tmp_path):
    paths = [write_mixture(tmp_path / p, 0) for p in ("d/a/x.wav", "d/b/x.flac")]
    assert [f.name for f in collect_inputs(paths)] == ["a/x", "b/x"]
    assert [f.name for f in collect_inputs([tmp_path / "d"])] == ["a/x", "b/x"]
    assert [f.name for f in collect_inputs([paths[0]])] == ["x"]
