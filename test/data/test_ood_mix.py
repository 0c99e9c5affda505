"""Out-of-domain mixing against tiny fake WSJ0-2mix / MUSAN / DEMAND trees in their real layouts."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.bin import make_ood_mixtures as ood_cli
from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import read_kv, read_text
from sepalm_espnet.data.libri2mix_wham import CorpusError
from sepalm_espnet.data.ood_mix import SNR_RANGE_DB, make_ood_set

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "libri2mix_wham" / "sepalm1"
WSJ_TT_IDS = ["443c020f_0.5_22go010p_-0.5", "050a050a_0.0_447o030v_-0.0",
              "22ha010e_1.1_420c020n_-1.1", "051o020n_2.3_441c0208_-2.3", "446o0309_0.7_053c010j_-0.7"]
NUM_SAMPLES = 1600


def write_wav(path, samples, fs=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, fs, subtype="PCM_16")


def random_int16(seed, num_samples, amplitude=3000):
    return np.random.default_rng(seed).integers(-amplitude, amplitude, num_samples).astype(np.int16)


def make_wsj0_2mix(root, amplitude=3000):
    for i, key in enumerate(WSJ_TT_IDS):
        for j, folder in enumerate(("s1", "s2", "mix")):
            write_wav(root / "wav16k" / "min" / "tt" / folder / f"{key}.wav",
                      random_int16(10 * i + j, NUM_SAMPLES, amplitude))
    return root


def make_musan(root, num_samples=(4000, 5000, 300)):
    names = ["free-sound/noise-free-sound-0000.wav", "free-sound/noise-free-sound-0001.wav",
             "sound-bible/noise-sound-bible-0000.wav"]
    for k, (name, n) in enumerate(zip(names, num_samples)):
        write_wav(root / "noise" / name, random_int16(100 + k, n))
    (root / "noise" / "free-sound" / "ANNOTATIONS").write_text("not audio\n")
    return root


def make_demand(root, fs=16000):
    for k, env in enumerate(("DKITCHEN", "NPARK", "TMETRO")):
        for channel in ("ch01", "ch02"):
            write_wav(root / env / f"{channel}.wav", random_int16(200 + k, 6000), fs)
    return root


def make_wsj0_dots(root):
    for key in WSJ_TT_IDS:
        for utt in key.split("_")[::2]:
            dot = root / "si_et_05" / utt[:3] / f"{utt[:6]}00.dot"
            dot.parent.mkdir(parents=True, exist_ok=True)
            with open(dot, "a") as f:
                f.write(f"WORDS OF {utt} ({utt})\n")
    return root


@pytest.fixture
def roots(tmp_path):
    return {"wsj0_2mix": make_wsj0_2mix(tmp_path / "wsj0-mix" / "2speakers"),
            "musan": make_musan(tmp_path / "musan"), "demand": make_demand(tmp_path / "DEMAND")}


def generate(roots, tmp_path, noise="musan", seed=0, nj=1, name="run", **kwargs):
    return make_ood_set(noise, roots["wsj0_2mix"], roots[noise], tmp_path / name / "data",
                        tmp_path / name / "audio", seed=seed, nj=nj, **kwargs)


def read_int16(path):
    data, fs = sf.read(str(path), dtype="int16")
    assert fs == 16000
    return data.astype(np.int64)


def metadata_rows(out_dir):
    audio_dir = out_dir.parent.parent / "audio" / out_dir.name
    with open(audio_dir / "metadata.csv", newline="") as f:
        return {row["mixture_ID"]: row for row in csv.DictReader(f)}


def snr_db(speech, noise):
    return 10 * np.log10(np.sum(speech.astype(float) ** 2) / np.sum(noise.astype(float) ** 2))


@pytest.mark.parametrize("noise", ["musan", "demand"])
def test_mixture_is_exact_int16_sum_and_snr_in_range(roots, tmp_path, noise):
    out = generate(roots, tmp_path, noise)
    rows = metadata_rows(out)
    wav, spk1, spk2, noise1 = (read_kv(out / name) for name in ("wav.scp", "spk1.scp", "spk2.scp", "noise1.scp"))
    assert list(wav) == sorted(WSJ_TT_IDS)
    assert out.name == f"ood_{noise}_test"
    for key in WSJ_TT_IDS:
        mix, s1, s2, n = (read_int16(scp[key]) for scp in (wav, spk1, spk2, noise1))
        assert len(mix) == len(s1) == len(s2) == len(n) == NUM_SAMPLES
        np.testing.assert_array_equal(mix, s1 + s2 + n)
        measured = snr_db(s1 + s2, n)
        assert SNR_RANGE_DB[0] - 0.01 <= measured <= SNR_RANGE_DB[1] + 0.01
        assert measured == pytest.approx(float(rows[key]["snr_db"]), abs=0.01)
        assert rows[key]["noise_source_path"].startswith(str(roots[noise]))
        # Quiet sources need no rescaling: they are copied bit-exactly.
        assert float(rows[key]["scale"]) == 1.0
        original = read_int16(Path(roots["wsj0_2mix"]) / "wav16k" / "min" / "tt" / "s1" / f"{key}.wav")
        np.testing.assert_array_equal(s1, original)
    assert len({row["noise_source_path"] for row in rows.values()}) > 1  # noise files are drawn


def test_demand_uses_channel_one_only(roots, tmp_path):
    rows = metadata_rows(generate(roots, tmp_path, "demand"))
    assert {Path(row["noise_source_path"]).name for row in rows.values()} == {"ch01.wav"}


def test_loud_sources_are_scaled_together_without_clipping(tmp_path):
    roots = {"wsj0_2mix": make_wsj0_2mix(tmp_path / "wsj0_2mix", amplitude=32000),
             "musan": make_musan(tmp_path / "musan")}
    out = generate(roots, tmp_path)
    for key, row in metadata_rows(out).items():
        assert float(row["scale"]) < 1.0
        mix = read_int16(read_kv(out / "wav.scp")[key])
        assert np.max(np.abs(mix)) <= 0.9 * 32768 + 2


def test_short_noise_is_looped(tmp_path):
    roots = {"wsj0_2mix": make_wsj0_2mix(tmp_path / "wsj0_2mix"),
             "musan": make_musan(tmp_path / "musan", num_samples=(300, 300, 300))}
    out = generate(roots, tmp_path)
    for key, row in metadata_rows(out).items():
        noise = read_int16(read_kv(out / "noise1.scp")[key])
        # One scale and rounding for all samples: a 300-sample period repeats to within 1 LSB.
        assert np.max(np.abs(noise[300:] - noise[:-300])) <= 1
        source = read_int16(row["noise_source_path"])
        offset = int(row["noise_offset"])
        expected = np.roll(source, -offset)[: len(source)]
        gain = np.dot(noise[:300], expected) / np.dot(expected, expected)
        np.testing.assert_allclose(noise[:300], gain * expected, atol=1)


def test_deterministic_per_seed_whatever_nj(roots, tmp_path):
    def fingerprint(out):
        rows = metadata_rows(out)
        audio = {key: [read_int16(read_kv(out / scp)[key]).tobytes() for scp in ("wav.scp", "noise1.scp")]
                 for key in rows}
        return {key: (row["snr_db"], row["noise_source_path"], row["noise_offset"]) for key, row in rows.items()}, audio

    first = fingerprint(generate(roots, tmp_path, seed=3, name="a"))
    assert fingerprint(generate(roots, tmp_path, seed=3, nj=2, name="b")) == first
    other_seed, _ = fingerprint(generate(roots, tmp_path, seed=4, name="c"))
    assert other_seed != first[0]


def test_texts_from_wsj0_transcripts(roots, tmp_path):
    out = generate(roots, tmp_path, wsj0_text_dir=make_wsj0_dots(tmp_path / "wsj0"))
    text1, text2 = read_text(out / "text_spk1"), read_text(out / "text_spk2")
    assert list(text1) == sorted(WSJ_TT_IDS)
    for key in WSJ_TT_IDS:
        utt1, _, utt2, _ = key.split("_")
        assert (text1[key], text2[key]) == (f"WORDS OF {utt1}", f"WORDS OF {utt2}")
    assert read_kv(out / "utt2spk") == {k: k for k in sorted(WSJ_TT_IDS)}


def test_rerun_skips_a_finished_set(roots, tmp_path):
    out = generate(roots, tmp_path)
    before = {p: p.read_bytes() for p in out.parent.parent.rglob("*") if p.is_file()}
    make_ood_set("musan", None, None, out.parent, tmp_path / "run" / "audio", seed=9)
    assert {p: p.read_bytes() for p in out.parent.parent.rglob("*") if p.is_file()} == before


def assert_no_data_dir(tmp_path):
    data = tmp_path / "run" / "data"
    assert not data.exists() or list(data.iterdir()) == []


@pytest.mark.parametrize("noise, root, message", [
    ("musan", "", "^MUSAN is not set in db.sh$"),
    ("demand", None, "^DEMAND is not set in db.sh$"),
    ("musan", "empty", "^MUSAN=.*/empty: missing noise/free-sound$"),
    ("demand", "empty", r"^DEMAND=.*/empty: no <ENV>/ch01.wav found"),
])
def test_bad_noise_root_names_the_variable(roots, tmp_path, noise, root, message):
    if root == "empty":
        root = tmp_path / "empty"
        root.mkdir()
    with pytest.raises(CorpusError, match=message):
        make_ood_set(noise, roots["wsj0_2mix"], root, tmp_path / "run" / "data", tmp_path / "run" / "audio")
    assert_no_data_dir(tmp_path)


def test_bad_speech_root_and_missing_files_are_named(roots, tmp_path):
    with pytest.raises(CorpusError, match="^WSJ0_2MIX is not set in db.sh$"):
        generate({**roots, "wsj0_2mix": ""}, tmp_path)
    with pytest.raises(CorpusError, match="^WSJ0_2MIX=.*/musan: missing wav16k/min/tt/s1$"):
        generate({**roots, "wsj0_2mix": roots["musan"]}, tmp_path)
    missing = Path(roots["wsj0_2mix"]) / "wav16k" / "min" / "tt" / "s2" / f"{WSJ_TT_IDS[2]}.wav"
    missing.unlink()
    with pytest.raises(CorpusError, match=f"audio file not found: {missing}$"):
        generate(roots, tmp_path)
    assert_no_data_dir(tmp_path)


def test_demand_48k_archive_is_refused(tmp_path, roots):
    roots = {**roots, "demand": make_demand(tmp_path / "DEMAND48", fs=48000)}
    with pytest.raises(AudioError, match=r"DKITCHEN/ch01.wav: sample rate 48000, expected 16000"):
        generate(roots, tmp_path, "demand")
    assert_no_data_dir(tmp_path)


def test_cli_reports_the_variable_without_traceback(roots, tmp_path):
    with pytest.raises(SystemExit) as error:
        ood_cli.main(["--noise_corpus", "demand", "--wsj0_2mix", str(roots["wsj0_2mix"]),
                      "--datadir", str(tmp_path / "data"), "--audio_root", str(tmp_path / "audio")])
    assert str(error.value).endswith("error: DEMAND is not set in db.sh")


def test_data_sh_generates_both_ood_sets(roots, tmp_path):
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    shutil.copy(RECIPE / "local" / "data.sh", recipe / "local" / "data.sh")
    shutil.copy(RECIPE / "db.sh", recipe / "db.sh")
    (recipe / "utils").symlink_to(REPO / "utils")
    (recipe / "path.sh").write_text(
        f'export PATH="{Path(sys.executable).parent}:$PATH"\nexport PYTHONPATH="{REPO}"\n')
    env = {**os.environ, "WSJ0_2MIX": str(roots["wsj0_2mix"]), "MUSAN": str(roots["musan"]),
           "DEMAND": str(roots["demand"])}
    result = subprocess.run(["bash", "local/data.sh", "--sets", "", "--seed", "5", "--nj", "1"],
                            cwd=recipe, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (recipe / "data").iterdir()) == ["ood_audio", "ood_demand_test", "ood_musan_test"]
    assert (recipe / "data" / "ood_audio" / "ood_musan_test" / "metadata.csv").is_file()
