"""The recipe machinery as a new user meets it (stages 1-2 of the mini recipe): every input file
signs a stage, bad options fail before anything is touched, and nothing finished is deleted."""
import pytest

from sepalm_espnet.data.kaldi_dir import read_kv, write_kv

pytestmark = pytest.mark.integration
DATA = ["--local_data_opts", "--n_train 2 --n_dev 1 --n_test 1", "--valid_set", "dev", "--test_sets", "test"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, recipe_tools):
    scratch_recipe, run_recipe = recipe_tools
    recipe_dir = scratch_recipe("mini_librimix", tmp_path_factory.mktemp("core") / "sepalm1")
    run_recipe(recipe_dir, ["--stage", "1", "--stop_stage", "2", *DATA])
    return recipe_dir


def run(recipe, recipe_tools, *args):
    return recipe_tools[1](recipe, ["--stage", "2", "--stop_stage", "2", *DATA, *args])


def test_an_edited_reference_list_redoes_stage_2_and_keeps_the_old_dump(recipe, recipe_tools):
    assert "dump/raw/train is up to date, skipped" in run(recipe, recipe_tools).stderr
    spk1 = read_kv(recipe / "data/train/spk1.scp")
    spk2 = read_kv(recipe / "data/train/spk2.scp")
    key = next(iter(spk1))
    spk1[key], spk2[key] = spk2[key], spk1[key]  # swapped references: same lengths, other content
    write_kv(recipe / "data/train/spk1.scp", spk1)
    write_kv(recipe / "data/train/spk2.scp", spk2)
    stderr = run(recipe, recipe_tools).stderr
    assert "dump/raw/train was made with other inputs or options: moved to dump/raw/train.old." in stderr
    assert "dump/raw/dev is up to date, skipped" in stderr
    assert list(recipe.glob("dump/raw/train.old.*/.done"))
    assert (recipe / "dump/raw/train/.done").is_file()


@pytest.mark.parametrize("args, message", [
    (["--audio_format", "mp3"], "--audio_format mp3: wav or flac"),
    (["--nj", "abc"], "'abc' is not an integer"),
    (["--nj", "0"], "must be at least 1"),
    (["--train_num_threads", "0"], "must be at least 1"),
    (["--stage", "abc"], "'abc' is not an integer"),
    (["-stop_stage", "5"], "-stop_stage"),
    (["--dumpdir", "my dump"], "'my dump': use a directory path without spaces"),
    (["--sep_inference_config", "conf/missing.yaml"], "conf/missing.yaml: config file not found"),
    (["--pretrained_model", "exp/missing.zip"], "--pretrained_model exp/missing.zip: not found"),
    (["--unit_kmeans", "conf"], "--unit_kmeans conf: no kmeans.yaml"),
    (["--cor_base_tokenizer", "fnlp/SpeechGPT-7B-cm"], "SpeechGPT understands only the units of its own"),
])
def test_bad_options_fail_before_anything_is_touched(recipe, recipe_tools, args, message):
    before = sorted(p.name for p in (recipe / "dump/raw").iterdir())
    done = (recipe / "dump/raw/train/.done").read_text()
    with pytest.raises(AssertionError, match=message):
        run(recipe, recipe_tools, *args)
    assert sorted(p.name for p in (recipe / "dump/raw").iterdir()) == before
    assert (recipe / "dump/raw/train/.done").read_text() == done
    assert not list(recipe.glob("1=1*"))
