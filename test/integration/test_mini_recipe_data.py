"""Mini recipe stages 1-2 through run.sh, as a user runs them."""
import pytest
import soundfile as sf

from sepalm_espnet.data.kaldi_dir import read_kv

pytestmark = pytest.mark.integration
TINY = ["--local_data_opts", "--n_train 4 --n_dev 2 --n_test 2"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, recipe_tools):
    scratch_recipe, run_recipe = recipe_tools
    recipe_dir = scratch_recipe("mini_librimix", tmp_path_factory.mktemp("mini") / "sepalm1")
    run_recipe(recipe_dir, ["--stage", "1", "--stop_stage", "2", *TINY])
    return recipe_dir


def test_stage_1_2_outputs(recipe):
    for dset, n in (("train", 4), ("dev", 2), ("test", 2)):
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


def test_rerun_skips_finished_stages(recipe, recipe_tools):
    run_recipe = recipe_tools[1]
    proc = run_recipe(recipe, ["--stage", "1", "--stop_stage", "2", *TINY])
    assert "Stage 1: data/ is up to date, skipped" in proc.stderr
    assert "dump/raw/train is up to date, skipped" in proc.stderr


def test_other_sample_rate_redoes_stage_2(recipe, recipe_tools):
    run_recipe = recipe_tools[1]
    run_recipe(recipe, ["--stage", "2", "--stop_stage", "2", "--fs", "8000", *TINY])
    path = read_kv(recipe / "dump" / "raw" / "test" / "wav.scp").popitem()[1]
    assert sf.info(path).samplerate == 8000


def test_unimplemented_stage_stops_with_a_message(recipe, recipe_tools):
    run_recipe = recipe_tools[1]
    with pytest.raises(AssertionError, match="stage 16 is not implemented yet"):
        run_recipe(recipe, ["--stage", "16", "--stop_stage", "16", "--skip_upload_hf", "false"])


def test_unknown_option_is_rejected(recipe, recipe_tools):
    run_recipe = recipe_tools[1]
    with pytest.raises(AssertionError, match="no_such_option"):
        run_recipe(recipe, ["--no_such_option", "1"])
