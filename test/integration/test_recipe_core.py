"""The recipe machinery as a new user meets it (stages 1-2 of the mini recipe): every input file
signs a stage, bad options fail before anything is touched, and nothing finished is deleted."""
import pytest

from sepalm_espnet.data.kaldi_dir import read_kv, write_kv
from sepalm_espnet.tasks.loading import read_state_dict

pytestmark = pytest.mark.integration
DATA = ["--local_data_opts", "--n_train 2 --n_dev 1 --n_test 1", "--valid_set", "dev", "--test_sets", "test"]
# conf/tuning/train_sep_sepformer_mini.yaml in SpeechBrain's terms
MINI_SEPFORMER = dict(channels=64, kernel=16, d_model=64, nhead=4, d_ffn=128, layers=1, blocks=1, K=50, spks=2)


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
    (["--sep_init", "exp/missing.pth"], "--sep_init exp/missing.pth: not found"),
    (["--sep_pretrained", "x/y", "--sep_init", "conf/train_sep.yaml"], "give one of them"),
])
def test_bad_options_fail_before_anything_is_touched(recipe, recipe_tools, args, message):
    before = sorted(p.name for p in (recipe / "dump/raw").iterdir())
    done = (recipe / "dump/raw/train/.done").read_text()
    with pytest.raises(AssertionError, match=message):
        run(recipe, recipe_tools, *args)
    assert sorted(p.name for p in (recipe / "dump/raw").iterdir()) == before
    assert (recipe / "dump/raw/train/.done").read_text() == done
    assert not list(recipe.glob("1=1*"))


def test_a_speechbrain_sepformer_is_imported_by_stage_3_and_fine_tuned_from(recipe, recipe_tools, speechbrain_sepformer):
    speechbrain_sepformer(recipe / "downloads/sepformer-mini", MINI_SEPFORMER)
    args = ["--stage", "3", "--stop_stage", "4", *DATA, "--sep_pretrained", "downloads/sepformer-mini"]
    stderr = recipe_tools[1](recipe, args).stderr
    assert "Stage 3: import the SpeechBrain SepFormer downloads/sepformer-mini into exp/sep_sepformer-mini" in stderr
    imported = recipe / "exp/sep_sepformer-mini/valid.si_snr_loss.ave.pth"
    assert len(read_kv(recipe / "exp/sep_sepformer-mini/decode/test/wav.scp")) == 2  # one estimate per speaker
    assert "exp/sep_sepformer-mini is up to date, skipped" in recipe_tools[1](recipe, args).stderr

    recipe_tools[1](recipe, ["--stage", "3", "--stop_stage", "3", *DATA, "--sep_tag", "finetuned",
                             "--sep_init", "exp/sep_sepformer-mini/valid.si_snr_loss.ave.pth", "--sep_args", "--max_epoch 1 --batch_size 2"])
    start, tuned = read_state_dict(imported), read_state_dict(recipe / "exp/sep_finetuned/valid.si_snr_loss.ave.pth")
    assert start.keys() == tuned.keys()
    moved = max((tuned[k] - start[k]).abs().max().item() for k in start)
    # A step or two of Adam moves each weight by about the learning rate; a training that did not
    # start from the import would be a whole random init away from it.
    assert 0 < moved < 0.01, f"one epoch from the imported weights moved them by up to {moved}"


def test_a_baseline_separator_config_trains_in_stage_3_and_separates_in_stage_4(recipe, recipe_tools):
    default = ["--stage", "3", "--stop_stage", "3", *DATA, "--sep_args", "--max_epoch 1 --batch_size 2"]
    recipe_tools[1](recipe, default)
    recipe_tools[1](recipe, ["--stage", "3", "--stop_stage", "4", *DATA, "--sep_config",
                             "conf/tuning/train_sep_conv_tasnet_mini.yaml", "--sep_args", "--max_epoch 1 --batch_size 2"])
    exp = recipe / "exp/sep_train_sep_conv_tasnet_mini"
    assert (exp / "valid.si_snr_loss.ave.pth").is_file()
    assert len(read_kv(exp / "decode/test/wav.scp")) == 2
    assert "Separator only (train_sep_conv_tasnet_mini)\tseparator_only" in (recipe / "exp/systems.tsv").read_text()
    # Each separator has its own shape statistics: the baseline left the default's experiment finished.
    stderr = recipe_tools[1](recipe, default).stderr
    assert "exp/sep_train_sep_sepformer_mini is up to date, skipped" in stderr and "moved to" not in stderr
