"""The mini recipe through run.sh, as a user runs it, on a tiny corpus and a 1-epoch separator."""
import numpy as np
import pytest
import soundfile as sf

from sepalm_espnet.data.kaldi_dir import read_kv

pytestmark = pytest.mark.integration
TINY = [
    "--local_data_opts", "--n_train 6 --n_dev 2 --n_test 2",
    "--sep_args", "--max_epoch 1 --batch_size 2",
    "--skip_stages", "5 6 7 8 9 10 11 12 13",  # not implemented yet
]
LAST_STAGE = "15"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, recipe_tools):
    scratch_recipe, run_recipe = recipe_tools
    recipe_dir = scratch_recipe("mini_librimix", tmp_path_factory.mktemp("mini") / "sepalm1")
    run_recipe(recipe_dir, ["--stage", "1", "--stop_stage", LAST_STAGE, *TINY])
    return recipe_dir


def test_stage_1_2_dump_16k_mono_with_lengths(recipe):
    for dset, n in (("train", 6), ("dev", 2), ("test", 2)):
        dump = recipe / "dump" / "raw" / dset
        wavs = read_kv(dump / "wav.scp")
        assert len(wavs) == n
        assert set(read_kv(dump / "spk2.scp")) == set(wavs)
        lengths = read_kv(dump / "utt2num_samples")
        for key, path in wavs.items():
            info = sf.info(path)
            assert info.samplerate == 16000 and info.channels == 1
            assert int(lengths[key]) == info.frames
        assert (dump / ".done").is_file()
        assert read_kv(dump / "text_spk1", allow_empty_value=True).keys() == wavs.keys()


def test_stage_3_4_separate_every_set_with_a_permutation(recipe):
    exp = recipe / "exp" / "sep_train_sep_sepformer_mini"
    assert (exp / "valid.si_snr_loss.ave.pth").exists()
    assert "sample_rate: 16000" in (exp / "config.yaml").read_text()
    for dset in ("train", "dev", "test"):
        decode = exp / "decode" / dset
        mixtures = read_kv(recipe / "dump" / "raw" / dset / "wav.scp")
        permutation = read_kv(decode / "permutation")
        assert permutation.keys() == mixtures.keys()
        assert all(sorted(p.split()) == ["1", "2"] for p in permutation.values())
        for spk in (1, 2):
            estimates = read_kv(recipe / decode.relative_to(recipe) / f"spk{spk}.scp")
            assert estimates.keys() == mixtures.keys()
            key, path = next(iter(estimates.items()))
            estimate, fs = sf.read(recipe / path)
            assert fs == 16000 and len(estimate) == sf.info(mixtures[key]).frames
            assert np.all(np.isfinite(estimate))


def test_stage_14_results_table(recipe):
    results = (recipe / "exp" / "RESULTS.md").read_text()
    assert "## test" in results
    row = next(line for line in results.splitlines() if line.startswith("| SepFormer"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-1] == "2"  # N utterances
    float(cells[1])  # SI-SNRi is a number


def test_stage_15_archive_separates_like_the_recipe(recipe):
    from sepalm_espnet.inference import SeparatorModel

    archive = recipe / "exp" / "packed" / "sepalm_train_sep_sepformer_mini.zip"
    model = SeparatorModel.from_pretrained(archive, cache_dir=recipe / "cache")
    key, path = next(iter(read_kv(recipe / "dump" / "raw" / "test" / "wav.scp").items()))
    estimates = model.separate(path)
    decoded = read_kv(recipe / "exp" / "sep_train_sep_sepformer_mini" / "decode" / "test" / "spk1.scp")
    np.testing.assert_allclose(estimates[0], sf.read(recipe / decoded[key], dtype="float32")[0], atol=1e-4)


def test_rerun_skips_finished_stages(recipe, recipe_tools):
    proc = recipe_tools[1](recipe, ["--stage", "1", "--stop_stage", "14", *TINY])
    for line in ("Stage 1: data/ is up to date, skipped", "dump/raw/train is up to date, skipped",
                 "sep_stats_16000 is up to date, skipped", "sep_train_sep_sepformer_mini is trained, skipped",
                 "decode/test is up to date, skipped", "decode/test/score is up to date, skipped"):
        assert line in proc.stderr


def test_unimplemented_stage_stops_with_a_message(recipe, recipe_tools):
    with pytest.raises(AssertionError, match="stage 16 is not implemented yet"):
        recipe_tools[1](recipe, ["--stage", "16", "--stop_stage", "16", "--skip_upload_hf", "false"])


def test_unknown_option_is_rejected(recipe, recipe_tools):
    with pytest.raises(AssertionError, match="no_such_option"):
        recipe_tools[1](recipe, ["--no_such_option", "1"])


def test_other_sample_rate_redoes_stage_2(recipe, recipe_tools):
    recipe_tools[1](recipe, ["--stage", "2", "--stop_stage", "2", "--fs", "8000", *TINY])
    path = read_kv(recipe / "dump" / "raw" / "test" / "wav.scp").popitem()[1]
    assert sf.info(path).samplerate == 8000
