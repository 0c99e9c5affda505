"""Corpus preparation against tiny fake Libri2Mix / LibriSpeech / WHAM! / WHAMR! / WSJ0 trees
that use the real folder layout, file names and CSV columns."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.bin import prepare_libri2mix_wham as prepare_cli
from sepalm_espnet.data.kaldi_dir import read_kv, read_text
from sepalm_espnet.data.libri2mix_wham import (
    CorpusError,
    CorpusRoots,
    prepare_corpora,
    prepare_libri2mix,
    prepare_wham,
    prepare_whamr,
)

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "libri2mix_wham" / "sepalm1"

# Listed unsorted on purpose: the data dirs must come out sorted.
LIBRI2MIX_IDS = {
    "train-100": ["1235-135887-0017_103-1240-0003", "103-1240-0000_19-198-0001"],
    "train-360": ["1001-134707-0000_1006-135212-0002"],
    "dev": ["84-121123-0001_2277-149896-0000", "1272-128104-0000_1988-147956-0010"],
    "test": ["61-70968-0000_1089-134686-0002"],
}
LIBRISPEECH_OF = {"train-100": "train-clean-100", "train-360": "train-clean-360",
                  "dev": "dev-clean", "test": "test-clean"}
WSJ_IDS = {
    "tr": ["40na010x_1.9857_01xo031a_-1.9857", "011a0101_0.061105_401c020s_-0.061105"],
    "cv": ["01aa010k_1.2_020c020g_-1.2"],
    "tt": ["443c020f_0.5_22go010p_-0.5", "050a050a_0.0_447o030v_-0.0"],
}
WHAM_FOLDERS = ("mix_both", "s1", "s2", "noise")
WHAMR_FOLDERS = ("mix_both_reverb", "mix_clean_reverb", "s1_anechoic", "s2_anechoic",
                 "s1_reverb", "s2_reverb", "noise")


def transcript(utt_id):
    return f"WORDS OF {utt_id.upper()}"


def write_wav(path, seed=0, num_samples=1600):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).integers(-3000, 3000, num_samples).astype(np.int16)
    sf.write(str(path), samples, 16000, subtype="PCM_16")


def make_librispeech(root):
    for subset, ids in LIBRI2MIX_IDS.items():
        for mixture_id in ids:
            for utt in mixture_id.split("_"):
                speaker, chapter, _ = utt.split("-")
                trans = root / LIBRISPEECH_OF[subset] / speaker / chapter / f"{speaker}-{chapter}.trans.txt"
                trans.parent.mkdir(parents=True, exist_ok=True)
                with open(trans, "a") as f:
                    f.write(f"{utt} {transcript(utt)}\n")
    return root


def write_mixture_csv(path, rows, columns=("mixture_ID", "mixture_path", "source_1_path",
                                          "source_2_path", "noise_path", "length")):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def make_libri2mix(root):
    """LibriMix's output: wav16k/min/<subset>/<folder>/<id>.wav, absolute paths in the CSVs."""
    base = root / "wav16k" / "min"
    for subset, ids in LIBRI2MIX_IDS.items():
        rows = []
        for i, mixture_id in enumerate(ids):
            paths = {folder: base / subset / folder / f"{mixture_id}.wav" for folder in WHAM_FOLDERS}
            for j, path in enumerate(paths.values()):
                write_wav(path, seed=10 * i + j)
            rows.append({"mixture_ID": mixture_id, "mixture_path": paths["mix_both"],
                         "source_1_path": paths["s1"], "source_2_path": paths["s2"],
                         "noise_path": paths["noise"], "length": 1600})
        write_mixture_csv(base / "metadata" / f"mixture_{subset}_mix_both.csv", rows)
    return root


def make_wsj_mix(root, folders):
    for split, ids in WSJ_IDS.items():
        for i, mixture_id in enumerate(ids):
            for j, folder in enumerate(folders):
                write_wav(root / "wav16k" / "min" / split / folder / f"{mixture_id}.wav", seed=10 * i + j)
    return root


def make_wsj0_dots(root):
    """WSJ0's transcripts: one .dot per speaker session, lines `text (uttid)`."""
    utts = sorted({part for ids in WSJ_IDS.values() for key in ids for part in key.split("_")[::2]})
    for utt in utts:
        dot = root / "transcrp" / "dots" / "si_tr_s" / utt[:3] / f"{utt[:6]}00.dot"
        dot.parent.mkdir(parents=True, exist_ok=True)
        with open(dot, "a") as f:
            f.write(f"{transcript(utt)} ({utt.upper() if utt.startswith('4') else utt})\n")
    return root


@pytest.fixture
def corpora(tmp_path):
    roots = CorpusRoots(
        librispeech=make_librispeech(tmp_path / "LibriSpeech"),
        libri2mix=make_libri2mix(tmp_path / "Libri2Mix"),
        wham=make_wsj_mix(tmp_path / "wham", WHAM_FOLDERS),
        whamr=make_wsj_mix(tmp_path / "whamr", WHAMR_FOLDERS),
    )
    return roots, make_wsj0_dots(tmp_path / "wsj0")


def assert_nothing_written(datadir):
    assert not datadir.exists() or list(datadir.iterdir()) == []


def test_libri2mix_dev_keys_sorted_and_texts_split_from_the_id(corpora, tmp_path):
    roots, _ = corpora
    out = prepare_libri2mix(roots.libri2mix, roots.librispeech, "dev", tmp_path / "data" / "libri2mix_dev")
    keys = sorted(LIBRI2MIX_IDS["dev"])
    for name in ("wav.scp", "spk1.scp", "spk2.scp", "noise1.scp", "utt2spk", "text_spk1", "text_spk2"):
        assert list(read_kv(out / name, allow_empty_value=True)) == keys, name
    base = Path(roots.libri2mix) / "wav16k" / "min" / "dev"
    for folder, scp in (("mix_both", "wav.scp"), ("s1", "spk1.scp"), ("s2", "spk2.scp"), ("noise", "noise1.scp")):
        assert read_kv(out / scp) == {k: str(base / folder / f"{k}.wav") for k in keys}
    assert read_kv(out / "utt2spk") == {k: k for k in keys}
    assert read_kv(out / "spk2utt") == {k: k for k in keys}
    text1, text2 = read_text(out / "text_spk1"), read_text(out / "text_spk2")
    for key in keys:
        utt1, utt2 = key.split("_")
        assert (text1[key], text2[key]) == (transcript(utt1), transcript(utt2))


def test_libri2mix_train_joins_train100_and_train360(corpora, tmp_path):
    roots, _ = corpora
    out = prepare_libri2mix(roots.libri2mix, roots.librispeech, "train", tmp_path / "data" / "libri2mix_train")
    keys = sorted(LIBRI2MIX_IDS["train-100"] + LIBRI2MIX_IDS["train-360"])
    assert list(read_kv(out / "wav.scp")) == keys
    assert read_text(out / "text_spk2")["1001-134707-0000_1006-135212-0002"] == transcript("1006-135212-0002")


def test_libri2mix_moved_after_generation_is_found_under_its_new_root(corpora, tmp_path):
    roots, _ = corpora
    moved = tmp_path / "moved" / "Libri2Mix"
    shutil.move(str(roots.libri2mix), moved)
    out = prepare_libri2mix(moved, roots.librispeech, "test", tmp_path / "data" / "libri2mix_test")
    key = LIBRI2MIX_IDS["test"][0]
    assert read_kv(out / "spk1.scp")[key] == str(moved / "wav16k" / "min" / "test" / "s1" / f"{key}.wav")


def test_wham_parts_with_wsj0_texts(corpora, tmp_path):
    roots, wsj0 = corpora
    for part, split in (("train", "tr"), ("dev", "cv"), ("test", "tt")):
        out = prepare_wham(roots.wham, part, tmp_path / "data" / f"wham_{part}", wsj0_text_dir=wsj0)
        keys = sorted(WSJ_IDS[split])
        assert list(read_kv(out / "wav.scp")) == keys
        assert read_kv(out / "noise1.scp")[keys[0]] == str(
            Path(roots.wham) / "wav16k" / "min" / split / "noise" / f"{keys[0]}.wav")
        text1, text2 = read_text(out / "text_spk1"), read_text(out / "text_spk2")
        for key in keys:
            utt1, _, utt2, _ = key.split("_")
            assert (text1[key], text2[key]) == (transcript(utt1), transcript(utt2))


def test_whamr_pairs_reverberant_mixture_with_anechoic_sources(corpora, tmp_path):
    roots, _ = corpora
    out = prepare_whamr(roots.whamr, "test", tmp_path / "data" / "whamr_test")
    key = sorted(WSJ_IDS["tt"])[0]
    base = Path(roots.whamr) / "wav16k" / "min" / "tt"
    assert read_kv(out / "wav.scp")[key] == str(base / "mix_both_reverb" / f"{key}.wav")
    assert read_kv(out / "spk1.scp")[key] == str(base / "s1_anechoic" / f"{key}.wav")
    assert read_kv(out / "spk2.scp")[key] == str(base / "s2_anechoic" / f"{key}.wav")
    assert not (out / "text_spk1").exists()  # no WSJ0 transcripts given


def test_combined_sets_prefix_keys_unique_and_sorted(corpora, tmp_path):
    roots, wsj0 = corpora
    datadir = tmp_path / "data"
    prepare_corpora(datadir, roots=roots, wsj0_text_dir=wsj0)
    for part, libri_subsets, wsj_split in (("train", ("train-100", "train-360"), "tr"), ("dev", ("dev",), "cv")):
        expected = sorted(
            [f"libri2mix_{k}" for s in libri_subsets for k in LIBRI2MIX_IDS[s]]
            + [f"wham_{k}" for k in WSJ_IDS[wsj_split]] + [f"whamr_{k}" for k in WSJ_IDS[wsj_split]]
        )
        combined = datadir / f"{part}_all"
        assert list(read_kv(combined / "wav.scp")) == expected
        assert len(set(expected)) == len(expected)
        assert read_kv(combined / "utt2spk") == {k: k for k in expected}
        assert list(read_text(combined / "text_spk1")) == expected
        whamr_key = f"whamr_{WSJ_IDS[wsj_split][0]}"
        assert "/mix_both_reverb/" in read_kv(combined / "wav.scp")[whamr_key]
    assert not (datadir / "test_all").exists()  # test sets stay per corpus


def test_rerun_skips_finished_sets(corpora, tmp_path):
    roots, wsj0 = corpora
    datadir = tmp_path / "data"
    prepare_corpora(datadir, roots=roots, wsj0_text_dir=wsj0)
    before = {p: p.read_bytes() for p in datadir.rglob("*") if p.is_file()}
    for root in (roots.libri2mix, roots.wham, roots.whamr):
        shutil.rmtree(root)
    prepare_corpora(datadir, roots=CorpusRoots())  # would fail on any set it did not skip
    assert {p: p.read_bytes() for p in datadir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("value", [None, ""])
def test_unset_root_names_the_db_sh_variable(corpora, tmp_path, value):
    roots, _ = corpora
    with pytest.raises(CorpusError, match="^LIBRI2MIX is not set in db.sh$"):
        prepare_libri2mix(value, roots.librispeech, "dev", tmp_path / "data" / "libri2mix_dev")
    with pytest.raises(CorpusError, match="^LIBRISPEECH is not set in db.sh$"):
        prepare_libri2mix(roots.libri2mix, value, "dev", tmp_path / "data" / "libri2mix_dev")
    with pytest.raises(CorpusError, match="^WHAMR is not set in db.sh$"):
        prepare_whamr(value, "dev", tmp_path / "data" / "whamr_dev")
    assert_nothing_written(tmp_path / "data")


def test_root_without_the_corpus_names_variable_and_missing_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError) as error:
        prepare_libri2mix(empty, empty, "dev", tmp_path / "data" / "libri2mix_dev")
    assert str(error.value) == f"LIBRI2MIX={empty}: missing wav16k/min/metadata/mixture_dev_mix_both.csv"
    with pytest.raises(CorpusError, match="^WHAM=.*/nowhere: not a directory$"):
        prepare_wham(tmp_path / "nowhere", "test", tmp_path / "data" / "wham_test")
    assert_nothing_written(tmp_path / "data")


def test_wham_folder_missing_is_named(corpora, tmp_path):
    roots, _ = corpora
    shutil.rmtree(Path(roots.whamr) / "wav16k" / "min" / "cv" / "mix_both_reverb")
    with pytest.raises(CorpusError, match=r"WHAMR=.*: missing .*/cv/mix_both_reverb"):
        prepare_whamr(roots.whamr, "dev", tmp_path / "data" / "whamr_dev")
    assert_nothing_written(tmp_path / "data")


def test_csv_missing_column_names_file_and_column(corpora, tmp_path):
    roots, _ = corpora
    csv_path = Path(roots.libri2mix) / "wav16k" / "min" / "metadata" / "mixture_dev_mix_both.csv"
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    write_mixture_csv(csv_path, rows, columns=("mixture_ID", "mixture_path", "source_1_path",
                                               "source_2_path", "length"))
    with pytest.raises(CorpusError) as error:
        prepare_libri2mix(roots.libri2mix, roots.librispeech, "dev", tmp_path / "data" / "libri2mix_dev")
    assert str(error.value) == f"{csv_path}: missing column 'noise_path'"
    assert_nothing_written(tmp_path / "data")


def test_csv_duplicate_or_empty_entries_name_the_line(corpora, tmp_path):
    roots, _ = corpora
    csv_path = Path(roots.libri2mix) / "wav16k" / "min" / "metadata" / "mixture_dev_mix_both.csv"
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    write_mixture_csv(csv_path, rows + rows[:1])
    with pytest.raises(CorpusError, match=f"^{csv_path}:4: duplicate mixture_ID '{rows[0]['mixture_ID']}'$"):
        prepare_libri2mix(roots.libri2mix, roots.librispeech, "dev", tmp_path / "data" / "libri2mix_dev")
    write_mixture_csv(csv_path, [rows[0], {**rows[1], "source_2_path": ""}])
    with pytest.raises(CorpusError, match=f"^{csv_path}:3: no value in column 'source_2_path'$"):
        prepare_libri2mix(roots.libri2mix, roots.librispeech, "dev", tmp_path / "data" / "libri2mix_dev")
    assert_nothing_written(tmp_path / "data")


def test_missing_referenced_wav_is_named_and_nothing_half_written(corpora, tmp_path):
    roots, _ = corpora
    # train-360 is read after train-100 succeeded: the failure must still leave no data dir.
    missing = Path(roots.libri2mix) / "wav16k" / "min" / "train-360" / "s2" / f"{LIBRI2MIX_IDS['train-360'][0]}.wav"
    missing.unlink()
    with pytest.raises(CorpusError, match=f"mixture_train-360_mix_both.csv:2: audio file not found: {missing}$"):
        prepare_libri2mix(roots.libri2mix, roots.librispeech, "train", tmp_path / "data" / "libri2mix_train")
    assert_nothing_written(tmp_path / "data")

    missing = Path(roots.wham) / "wav16k" / "min" / "tt" / "noise" / f"{WSJ_IDS['tt'][1]}.wav"
    missing.unlink()
    with pytest.raises(CorpusError, match=f"audio file not found: {missing}$"):
        prepare_wham(roots.wham, "test", tmp_path / "data" / "wham_test")
    assert_nothing_written(tmp_path / "data")


def test_missing_transcripts_are_named(corpora, tmp_path):
    roots, wsj0 = corpora
    trans = Path(roots.librispeech) / "test-clean" / "1089" / "134686" / "1089-134686.trans.txt"
    trans.write_text("1089-134686-0000 ANOTHER UTTERANCE\n")
    with pytest.raises(CorpusError, match=f"^{trans}: no transcript for utterance '1089-134686-0002'$"):
        prepare_libri2mix(roots.libri2mix, roots.librispeech, "test", tmp_path / "data" / "libri2mix_test")
    trans.unlink()
    with pytest.raises(CorpusError, match=f"missing transcript file {trans}$"):
        prepare_libri2mix(roots.libri2mix, roots.librispeech, "test", tmp_path / "data" / "libri2mix_test")
    for dot in wsj0.rglob("443*.dot"):
        dot.unlink()
    with pytest.raises(CorpusError, match="no transcript for utterance '443c020f'$"):
        prepare_wham(roots.wham, "test", tmp_path / "data" / "wham_test", wsj0_text_dir=wsj0)
    assert_nothing_written(tmp_path / "data")


def test_cli_reports_the_variable_without_traceback(corpora, tmp_path, capsys):
    roots, _ = corpora
    with pytest.raises(SystemExit) as error:
        prepare_cli.main(["--corpora", "libri2mix", "--datadir", str(tmp_path / "data"),
                          "--librispeech", str(roots.librispeech)])
    assert str(error.value).endswith("error: LIBRI2MIX is not set in db.sh")


def run_data_sh(tmp_path, env_roots, *options):
    """Run local/data.sh from a recipe dir laid out as the real one (utils/, path.sh beside it)."""
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    shutil.copy(RECIPE / "local" / "data.sh", recipe / "local" / "data.sh")
    shutil.copy(RECIPE / "db.sh", recipe / "db.sh")
    (recipe / "utils").symlink_to(REPO / "utils")
    (recipe / "path.sh").write_text(
        f'export PATH="{Path(sys.executable).parent}:$PATH"\nexport PYTHONPATH="{REPO}"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("LIBRI2MIX", "LIBRISPEECH", "WHAM", "WHAMR")}
    env.update({k: str(v) for k, v in env_roots.items()})
    return recipe, subprocess.run(["bash", "local/data.sh", *options], cwd=recipe, env=env,
                                  capture_output=True, text=True, timeout=60)


def test_data_sh_prepares_the_chosen_corpora(corpora, tmp_path):
    roots, _ = corpora
    recipe, result = run_data_sh(
        tmp_path, {"LIBRI2MIX": roots.libri2mix, "LIBRISPEECH": roots.librispeech},
        "--sets", "libri2mix", "--ood", "false", "--datadir", "data")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (recipe / "data").iterdir()) == [
        "dev_all", "libri2mix_dev", "libri2mix_test", "libri2mix_train", "train_all"]


def test_data_sh_fails_naming_the_unset_variable(corpora, tmp_path):
    roots, _ = corpora
    recipe, result = run_data_sh(tmp_path, {"LIBRI2MIX": roots.libri2mix, "LIBRISPEECH": roots.librispeech},
                                 "--ood", "false")
    assert result.returncode != 0
    assert "WHAM is not set in db.sh" in result.stderr
    assert "Traceback" not in result.stderr
