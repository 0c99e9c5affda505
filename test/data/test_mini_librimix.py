import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate, fftconvolve

from sepalm_espnet.data.data_dir import validate_data_dir
from sepalm_espnet.data.kaldi_dir import read_kv
from sepalm_espnet.data.mini_librimix import (
    FORTUNES_DIR,
    SNR_RANGE_DB,
    SPLITS,
    CorpusOptionsError,
    MiniLibriMixConfig,
    load_sentences,
    metadata_path,
    plan_corpus,
    prepare_mini_librimix,
    read_metadata,
    room_impulse_responses,
    transcript,
)
from sepalm_espnet.data.tts import EVAL_VOICES, TRAIN_VOICES, synthesize_cached

REPO = Path(__file__).resolve().parents[2]
CONFIG = MiniLibriMixConfig(n_train=4, n_dev=2, n_test=2, seed=3)
REVERB_CONFIG = MiniLibriMixConfig(n_train=2, n_dev=1, n_test=1, seed=3, reverb=True)
DATA_FILES = ("wav.scp", "spk1.scp", "spk2.scp", "noise1.scp", "utt2spk", "text_spk1", "text_spk2")


def build(root: Path, config: MiniLibriMixConfig, nj: int = 2):
    data_dirs = prepare_mini_librimix(root / "corpus", root / "data", config, nj=nj)
    return root / "corpus", data_dirs


@pytest.fixture(scope="module")
def sentences():
    """The sentences of every config here: all use the default word range."""
    return load_sentences(FORTUNES_DIR, CONFIG.min_words, CONFIG.max_words)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build(tmp_path_factory.mktemp("mini_librimix"), CONFIG)


@pytest.fixture(scope="module")
def reverb_corpus(tmp_path_factory):
    return build(tmp_path_factory.mktemp("mini_whamr"), REVERB_CONFIG)


def rows(corpus_dir: Path):
    return [row for split in SPLITS for row in read_metadata(metadata_path(corpus_dir, split))]


def int16(path) -> np.ndarray:
    data, fs = sf.read(path, dtype="int16")
    assert fs == 16000 and sf.info(path).subtype == "PCM_16"
    return data.astype(np.int64)


def file_tree(root: Path):
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_mixture_is_the_exact_sum_of_its_written_components(corpus):
    for row in rows(corpus[0]):
        mixture = int16(row["mixture_path"])
        components = [int16(row[k]) for k in ("source_1_path", "source_2_path", "noise_path")]
        assert len(mixture) == int(row["length"])
        np.testing.assert_array_equal(mixture, sum(components))


def test_same_seed_gives_the_same_bytes_whatever_nj(corpus, tmp_path):
    other_dir, _ = build(tmp_path, CONFIG, nj=1)
    first, second = file_tree(corpus[0]), file_tree(other_dir)
    assert set(first) == set(second)
    corpus_files = [name for name in first if name.startswith("wav16k/")] + ["options.json"]
    assert len(corpus_files) > 4 * sum(CONFIG.size(split) for split in SPLITS)
    for name in corpus_files:
        assert first[name].read_bytes() == second[name].read_bytes(), name
    # Float wavs carry a PEAK chunk with a timestamp, so the cache is compared by samples.
    for name in (name for name in first if name.startswith("tts_cache/")):
        np.testing.assert_array_equal(sf.read(first[name])[0], sf.read(second[name])[0])
    for split in SPLITS:
        texts = [metadata_path(d, split).read_text().replace(str(d), "")
                 for d in (corpus[0], other_dir)]
        assert texts[0] == texts[1]


def test_snr_measured_on_the_files_is_in_range_and_recorded(corpus):
    low, high = SNR_RANGE_DB
    for row in rows(corpus[0]):
        speech = int16(row["source_1_path"]) + int16(row["source_2_path"])
        noise = int16(row["noise_path"])
        snr = 10 * np.log10(np.sum(speech.astype(float) ** 2) / np.sum(noise.astype(float) ** 2))
        assert low - 0.01 <= snr <= high + 0.01
        assert abs(snr - float(row["snr_db"])) < 1e-3
        assert abs(float(row["source_1_gain_db"]) - float(row["source_2_gain_db"])) <= 10


def test_speakers_of_train_and_eval_are_disjoint_and_many(sentences):
    plans = plan_corpus(MiniLibriMixConfig(), sentences)  # the recipe's default sizes, no audio
    speakers = {split: {u.voice.speaker_id for p in plans[split] for u in p.sources}
                for split in SPLITS}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    assert len(set().union(*speakers.values())) >= 8
    texts = {split: {u.sentence for p in plans[split] for u in p.sources} for split in SPLITS}
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"]
    babble = {u.sentence for split in SPLITS for p in plans[split] for u in p.babble}
    assert babble and not babble & set().union(*texts.values())
    for plan in plans["train"]:
        assert plan.sources[0].voice != plan.sources[1].voice
        assert plan.sources[0].sentence != plan.sources[1].sentence


def test_written_speakers_follow_the_split(corpus):
    allowed = {"train": TRAIN_VOICES, "dev": EVAL_VOICES, "test": EVAL_VOICES}
    for split in SPLITS:
        ids = {v.speaker_id for v in allowed[split]}
        for row in read_metadata(metadata_path(corpus[0], split)):
            assert {row["source_1_speaker"], row["source_2_speaker"]} <= ids
            assert row["mixture_ID"].startswith(row["source_1_speaker"] + "-")


def test_sizes_of_one_split_do_not_shift_another(sentences):
    small = plan_corpus(MiniLibriMixConfig(n_train=3, n_dev=2, n_test=2), sentences)
    large = plan_corpus(MiniLibriMixConfig(n_train=6, n_dev=4, n_test=2), sentences)
    assert large["train"][:3] == small["train"] and large["dev"][:2] == small["dev"]
    assert large["test"] == small["test"]


def test_sentences_are_plain_words(sentences):
    assert len(sentences) > 1000 and sentences == sorted(set(sentences))
    for sentence in sentences:
        assert re.fullmatch(r"[A-Za-z',;:!?. -]+", sentence)
        assert CONFIG.min_words <= len(sentence.split()) <= CONFIG.max_words


def test_texts_are_the_transcripts_of_the_planned_sentences(corpus, sentences):
    plans = plan_corpus(CONFIG, sentences)
    for split, data_dir in corpus[1].items():
        texts = [read_kv(data_dir / f"text_spk{k}") for k in (1, 2)]
        assert len(texts[0]) == CONFIG.size(split)
        for plan in plans[split]:
            for k in (0, 1):
                text = texts[k][plan.mixture_id]
                assert text == transcript(plan.sources[k].sentence)
                assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", text)


def test_data_dirs_are_sorted_consistent_and_valid(corpus):
    for split, data_dir in corpus[1].items():
        assert data_dir == corpus[0].parent / "data" / split
        validate_data_dir(data_dir, require_text=True)
        tables = {name: read_kv(data_dir / name) for name in DATA_FILES}
        keys = list(tables["wav.scp"])
        assert keys == sorted(keys) and len(keys) == CONFIG.size(split)
        assert all(list(table) == keys for table in tables.values())
        assert all(tables["utt2spk"][key] == key for key in keys)
        for name in ("wav.scp", "spk1.scp", "spk2.scp", "noise1.scp"):
            paths = tables[name].values()
            assert all(os.path.isabs(path) and os.path.isfile(path) for path in paths)
        assert (data_dir / "spk2utt").read_text() == "".join(f"{key} {key}\n" for key in keys)
    assert "SNR dB" in (corpus[0] / "summary.txt").read_text()


def mtimes(root: Path):
    return {name: path.stat().st_mtime_ns for name, path in file_tree(root).items()}


def test_rerun_with_the_same_options_touches_nothing(corpus):
    root = corpus[0].parent
    before = mtimes(root)
    assert any(name.startswith("corpus/wav16k/") for name in before)
    assert any(name.startswith("data/train/") for name in before)
    build(root, CONFIG)
    assert mtimes(root) == before


def test_interrupted_run_resumes_only_the_missing_mixture(corpus, tmp_path):
    corpus_dir = tmp_path / "corpus"
    shutil.copytree(corpus[0], corpus_dir)
    (corpus_dir / ".done").unlink()
    lost = next(iter(sorted((corpus_dir / "wav16k/min/dev/s1").iterdir())))
    expected = (corpus[0] / lost.relative_to(corpus_dir)).read_bytes()
    lost.unlink()
    before = mtimes(corpus_dir / "wav16k")
    build(tmp_path, CONFIG)
    after = mtimes(corpus_dir / "wav16k")
    changed = {name for name in after if before.get(name) != after[name]}
    assert lost.read_bytes() == expected
    assert {Path(name).name for name in changed} == {lost.name}  # its mix, s2, noise rewritten too


def test_other_options_into_an_existing_corpus_are_refused(corpus, tmp_path):
    with pytest.raises(CorpusOptionsError, match=r"seed: 3 there, 4 now.*another --corpus_dir"):
        prepare_mini_librimix(corpus[0], tmp_path / "data", dataclasses.replace(CONFIG, seed=4))
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated" / "notes.txt").write_text("mine")
    with pytest.raises(CorpusOptionsError, match="no options.json"):
        prepare_mini_librimix(tmp_path / "unrelated", tmp_path / "data", CONFIG)


def test_missing_fortunes_names_the_debian_packages(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"apt-get install fortunes-min fortunes"):
        prepare_mini_librimix(tmp_path / "corpus", tmp_path / "data", CONFIG,
                              fortunes_dir=tmp_path / "none")


def normalized_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_reverberant_mixture_sums_images_and_keeps_anechoic_references(reverb_corpus, sentences):
    import pyroomacoustics as pra

    plans = plan_corpus(REVERB_CONFIG, sentences)
    plan_by_id = {plan.mixture_id: plan for split in SPLITS for plan in plans[split]}
    for row in rows(reverb_corpus[0]):
        assert 0.2 <= float(row["rt60"]) <= 0.6
        images = [int16(row[f"source_{k}_reverb_path"]) for k in (1, 2)]
        references = [int16(row[f"source_{k}_path"]) for k in (1, 2)]
        noise = int16(row["noise_path"])
        np.testing.assert_array_equal(int16(row["mixture_path"]), images[0] + images[1] + noise)
        plan = plan_by_id[row["mixture_ID"]]
        direct_paths = room_impulse_responses(plan.room, 16000, max_order=0)
        for k, (image, reference) in enumerate(zip(images, references)):
            source = plan.sources[k]
            dry = synthesize_cached(source.voice, source.sentence, 16000,
                                    reverb_corpus[0] / "tts_cache")
            expected = fftconvolve(dry.astype(float), direct_paths[k])[: len(reference)]
            assert normalized_correlation(expected, reference) > 0.9999
            assert normalized_correlation(expected, image) < 0.95
            correlation = correlate(reference, dry[: len(reference)])
            lag = np.argmax(np.abs(correlation)) - (len(reference) - 1)
            delay = float(row[f"source_{k + 1}_distance"]) / pra.constants.get("c") * 16000
            assert abs(lag - delay - pra.constants.get("frac_delay_length") // 2) <= 1


def test_recipe_data_sh_runs_from_a_recipe_dir(tmp_path):
    if not (REPO / "utils" / "parse_options.sh").is_file():
        pytest.skip("utils/parse_options.sh is not there yet")
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    (recipe / "utils").symlink_to(REPO / "utils")
    (recipe / "path.sh").symlink_to(REPO / "egs2/TEMPLATE/sepalm1/path.sh")
    (recipe / "local" / "data.sh").symlink_to(REPO / "egs2/mini_librimix/sepalm1/local/data.sh")
    python_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PYTHONPATH=str(REPO), PATH=python_dir + os.pathsep + os.environ["PATH"])
    options = ["--n_train", "2", "--n_dev", "1", "--n_test", "1", "--nj", "1", "--seed", "5"]

    def data_sh(*args):
        return subprocess.run(["bash", "local/data.sh", *args], cwd=recipe, env=env,
                              capture_output=True, text=True)

    result = data_sh(*options)
    assert result.returncode == 0, result.stderr
    assert len(read_kv(recipe / "data/train/wav.scp")) == 2
    assert (recipe / "downloads/mini_librimix/.done").is_file()
    assert "SNR dB" in result.stderr
    help_text = data_sh("--help")
    assert help_text.returncode == 0 and "--corpus_dir=downloads/mini_librimix" in help_text.stdout
    assert data_sh("--reverb", "yes").returncode != 0
