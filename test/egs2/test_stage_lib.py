"""The recipe's step life cycle (egs2/TEMPLATE/sepalm1/scripts/stage_lib.sh) driven from bash:
skip what is up to date, move aside (never delete) what other inputs made, and run the steps of
several sets as one job array whose outputs are merged per set."""
import os
import subprocess
import sys
from pathlib import Path

from sepalm_espnet.data.kaldi_dir import read_kv, read_text, write_kv

REPO = Path(__file__).resolve().parents[2]
STAGE_LIB = REPO / "egs2/TEMPLATE/sepalm1/scripts/stage_lib.sh"


def bash(script, cwd):
    prelude = (f"set -euo pipefail; python={sys.executable}; expdir=exp; nj=2; inference_nj=2; ngpu=0; "
               f"num_nodes=1; cmd_backend=local; decode_cmd=utils/run.sh; train_cmd=utils/run.sh; "
               f". {STAGE_LIB}; ")
    (cwd / "utils").exists() or (cwd / "utils").symlink_to(REPO / "utils")
    env = dict(os.environ, PATH=f"{REPO / 'utils'}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    return subprocess.run(["bash", "-c", prelude + script], cwd=cwd, env=env, capture_output=True, text=True)


def test_a_step_is_skipped_when_up_to_date_and_moved_aside_when_its_inputs_change(tmp_path):
    run = bash("step_needed out sig1 && echo result > out/file && step_done out sig1; "
               "step_needed out sig1 || echo skipped", tmp_path)
    assert run.returncode == 0, run.stderr
    assert "out is up to date, skipped" in run.stderr and "skipped" in run.stdout
    run = bash("step_needed out sig2 && echo ran", tmp_path)
    assert "out was made with other inputs or options: moved to out.old." in run.stderr
    [aside] = tmp_path.glob("out.old.*")
    assert (aside / "file").read_text() == "result\n" and (aside / ".done").read_text() == "sig1\n"
    assert not (tmp_path / "out/file").exists() and (tmp_path / "out/.signature").read_text() == "sig2\n"


def test_an_interrupted_step_resumes_in_place(tmp_path):
    run = bash("step_needed out sig && touch out/partial; step_needed out sig && ls out", tmp_path)
    assert run.returncode == 0 and "partial" in run.stdout and not list(tmp_path.glob("out.old.*"))


def test_files_sum_follows_contents_and_names_a_missing_input(tmp_path):
    (tmp_path / "a").write_text("1\n")
    first = bash("files_sum a", tmp_path).stdout
    (tmp_path / "a").write_text("2\n")
    assert bash("files_sum a", tmp_path).stdout != first
    run = bash("files_sum a missing", tmp_path)
    assert run.returncode != 0 and "missing not found: run the stage that makes it" in run.stderr


def test_steps_of_several_sets_run_as_one_job_array_and_merge_per_set(tmp_path):
    for dset, texts in (("a", {"u1": "cat", "u2": "dog", "u3": "hen"}), ("b", {"v1": "hello"})):
        write_kv(tmp_path / f"{dset}.txt", texts)
    script = ("steps_begin g2p; for d in a b; do steps_add out/$d sig_$d $d.txt --text $d.txt; done; "
              "steps_run sepalm_espnet.bin.g2p; steps_done")
    run = bash(script, tmp_path)
    assert run.returncode == 0, run.stderr
    assert list(read_text(tmp_path / "out/a/phonemes")) == ["u1", "u2", "u3"]
    assert list(read_text(tmp_path / "out/b/phonemes")) == ["v1"]
    assert (tmp_path / "exp/plans/g2p/plan.1").read_text().count("\n") == 2  # job 1 runs both sets
    assert (tmp_path / "exp/plans/g2p/plan.2").read_text().count("\n") == 1  # job 2: only a has a second split
    assert (tmp_path / "out/a/.done").read_text() == "sig_a\n"
    assert (tmp_path / "out/a/logdir/g2p.2.log").is_file() and not (tmp_path / "out/b/logdir/g2p.2.log").exists()
    rerun = bash(script, tmp_path)
    assert "out/a is up to date, skipped" in rerun.stderr and "out/b is up to date, skipped" in rerun.stderr


def test_a_failed_job_leaves_no_finished_step(tmp_path):
    write_kv(tmp_path / "a.txt", {"u1": "cat", "u2": "dog"})
    run = bash("steps_begin g2p; steps_add out/a sig a.txt --text missing.txt; steps_run sepalm_espnet.bin.g2p; "
               "steps_done", tmp_path)
    assert run.returncode != 0 and not (tmp_path / "out/a/.done").exists() and not (tmp_path / "out/a/phonemes").exists()


def test_a_step_dir_holding_a_step_made_before_it_is_refused_before_anything_moves(tmp_path):
    # Stage 7 once trained the tokenizer into exp/cor_x/tokenizer and then the corrector into
    # exp/cor_x: new --cor_args moved exp/cor_x aside, the new tokenizer with it, and training failed.
    run = bash("step_needed exp/cor/tokenizer t && step_done exp/cor/tokenizer t; echo old > exp/cor/.signature; "
               "step_needed exp/cor new", tmp_path)
    assert run.returncode != 0
    assert "exp/cor/tokenizer, made before exp/cor, is inside it: put it beside exp/cor" in run.stderr
    assert (tmp_path / "exp/cor/tokenizer/.done").is_file() and not list(tmp_path.glob("exp/cor.old.*"))


def test_a_changed_file_named_by_the_recipe_training_options_signs_the_training_anew(tmp_path):
    # The synthesizer's --token_list and the corrector's --tokenizer_dir: once only their paths
    # signed the step, so a retrained tokenizer left the finished corrector in place.
    write_kv(tmp_path / "train.txt", {"u1": "a"})
    (tmp_path / "conf.yaml").write_text("{}\n")
    (tmp_path / "tokenizer").mkdir()
    script = ("python=false; train_specs=(train.txt,text,text); recipe=(--token_list tokens.txt --tokenizer_dir tokenizer); "
              "train_task syn syn_train conf.yaml stats exp model text train_specs train_specs recipe ''")
    signatures = []
    for tokens, tokenizer in (("a b", "t1"), ("a b", "t1"), ("a c", "t1"), ("a c", "t2")):
        (tmp_path / "tokens.txt").write_text(tokens)
        (tmp_path / "tokenizer/.done").write_text(tokenizer)
        assert bash(script, tmp_path).returncode != 0  # `false` as Python: the statistics job fails
        signatures.append((tmp_path / "stats/.signature").read_text())
    assert signatures[0] == signatures[1] and len(set(signatures)) == 3


def test_a_step_moved_aside_keeps_tables_that_name_its_own_files(tmp_path):
    (tmp_path / "elsewhere.wav").write_text("kept")
    script = ("step_needed out/set sig1 && mkdir -p out/set/wav && echo first > out/set/wav/u1.wav && "
              f"printf 'u1 {tmp_path}/out/set/wav/u1.wav\\nu2 out/set/wav/u1.wav\\nu3 {tmp_path}/elsewhere.wav\\n' "
              "> out/set/wav.scp && step_done out/set sig1; "
              "step_needed out/set sig2 && mkdir -p out/set/wav && echo second > out/set/wav/u1.wav")
    run = bash(script, tmp_path)
    assert run.returncode == 0, run.stderr
    [aside] = tmp_path.glob("out/set.old.*")
    table = read_kv(aside / "wav.scp")
    assert table == {"u1": f"{aside}/wav/u1.wav", "u2": f"out/{aside.name}/wav/u1.wav", "u3": f"{tmp_path}/elsewhere.wav"}
    assert Path(table["u1"]).read_text() == "first\n"  # the moved data, not the new run's
    assert (tmp_path / table["u2"]).read_text() == "first\n"
