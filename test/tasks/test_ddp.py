"""Every ESPnet task of the toolkit trained for a few steps under DistributedDataParallel on 2
CPU ranks (gloo), launched by the recipe's own launch_training (scripts/stage_lib.sh, through
cmd.sh's job runner, with the recipe's distributed options).

ESPnet's single-node multi-process mode (--ngpu N > 1) forks one process per GPU, so CPUs never
reach it; CPU ranks are ESPnet's multi-node mode, one process a "node" with --ngpu 0. That is
the recipe's --num_nodes 2 --ngpu 0 Slurm job (its sbatch and srun stood in for here), and what
torchrun's RANK/WORLD_SIZE make of the recipe's single-node options. ESPnet shards every batch
over the ranks, so parameters that end equal on both ranks after training on disjoint
utterances were kept equal by DDP's gradient averaging; ddp_worker.py records each rank's.

Data and tiny configs are those of the tasks' own one-epoch tests (test_*_task.py).
"""
import math
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import soundfile as sf
import torch

import test_aligner_task as aligner
import test_corrector_task as corrector
import test_ger_task as ger
import test_reseparation_task as reseparation
import test_slm_ss_task as slm_ss
import test_synthesizer_task as synthesizer
import test_t2s_task as t2s
from sepalm_espnet.bin import train_tokenizer
from sepalm_espnet.corrector.ger_model import GER_PROMPT, split_nbest
from sepalm_espnet.corrector.tokenizer import save_tokenizer, train_sentencepiece_tokenizer
from sepalm_espnet.synthesizer.g2p import TokenList

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2/TEMPLATE/sepalm1"
WORKER = Path(__file__).with_name("ddp_worker.py")
WORLD_SIZE = 2
# Every training (a task's own options may override them): one epoch, no plots, data loaded in
# the rank's own process; --resume as the recipe passes it.
ONE_EPOCH = ["--max_epoch", "1", "--num_workers", "0", "--use_matplotlib", "false", "--use_tensorboard", "false",
             "--num_att_plot", "0", "--resume", "true"]
TIMEOUT_SECONDS = 300  # a training takes 8-15 s on two free cores
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD_SIZE}"]

Training = Tuple[str, List[str]]  # (sepalm_espnet.bin module, its ESPnet options)


def separator_training(tmp: Path) -> Training:
    """test/separator/test_sep_train.py's data and shrunk mini SepFormer; shape files as collect_stats writes them."""
    fs = 8000
    options = []
    for split, keys, seed in (("train", [f"tr{i}" for i in range(4)], 0), ("valid", ["cv0", "cv1"], 1)):
        rng = np.random.default_rng(seed)
        scps = {name: {} for name in ("speech_mix", "speech_ref1", "speech_ref2")}
        for key in keys:
            sources = rng.standard_normal((2, fs // 2)).astype(np.float32) * 0.1
            for name, samples in (("speech_ref1", sources[0]), ("speech_ref2", sources[1]),
                                  ("speech_mix", sources.sum(0))):
                scps[name][key] = tmp / split / f"{key}_{name}.wav"
                scps[name][key].parent.mkdir(parents=True, exist_ok=True)
                sf.write(scps[name][key], samples, fs)
        for name, wavs in scps.items():
            (tmp / split / f"{name}.scp").write_text("".join(f"{key} {wav}\n" for key, wav in sorted(wavs.items())))
            (tmp / split / f"{name}_shape").write_text("".join(f"{key} {fs // 2}\n" for key in sorted(wavs)))
            options += [f"--{split}_data_path_and_name_and_type", f"{tmp / split}/{name}.scp,{name},sound",
                        f"--{split}_shape_file", f"{tmp / split}/{name}_shape"]
    shrink = ["--encoder_conf", "channel=16", "--decoder_conf", "channel=16", "--separator_conf", "d_model=16",
              "--separator_conf", "nhead=2", "--separator_conf", "dim_feedforward=32", "--separator_conf",
              "chunk_size=10"]  # test/conftest.py SHRINK_SEPARATOR
    config = RECIPE / "conf/tuning/train_sep_sepformer_mini.yaml"
    # 0.25 s chunks, one per rank a step: 4 steps.
    return "sep_train", ["--config", str(config), *options, *shrink, "--chunk_length", "2000", "--batch_size", "2"]


def corrector_training(tmp: Path) -> Training:
    train = corrector.write_data_dir(tmp / "train", corrector.UTTERANCES)
    valid = corrector.write_data_dir(tmp / "valid", {key: corrector.UTTERANCES[key] for key in ("utt1", "utt2")})
    kmeans = corrector.kmeans_dir(tmp / "kmeans", corrector.N_UNITS)
    train_tokenizer.main(["--text", str(train / "text_pt"), str(train / "text_ct"), "--kmeans_dir", str(kmeans),
                          "--output_dir", str(tmp / "tokenizer")])
    return "cor_train", [
        "--config", str(corrector.MINI_CONFIG), "--tokenizer_dir", str(tmp / "tokenizer"),
        *corrector.data_args(train, valid), "--train_shape_file", str(corrector.write_units_shape(train)),
        "--valid_shape_file", str(corrector.write_units_shape(valid)), "--batch_size", "2",
        "--model_conf", "lm_config={hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, "
        "num_key_value_heads: 2, intermediate_size: 32}",
    ]


def synthesizer_training(model: str) -> Callable[[Path], Training]:
    def training(tmp: Path) -> Training:
        data = synthesizer.make_data_dir(tmp / "data", seed=0)
        _, _, module, *options = synthesizer.train_command(model, data, tmp / "exp")
        # Two steps: a parameter DDP waits for in vain stops the second one.
        return module.rsplit(".", 1)[1], [*options, "--num_iters_per_epoch", "2"]
    return training


def t2s_training(tmp: Path) -> Training:
    """test_t2s_task.py's data and options."""
    data = tmp / "data"
    data.mkdir()
    (data / "phonemes").write_text("".join(f"{k} {v}\n" for k, v in t2s.PHONEMES.items()))
    (data / "units").write_text("".join(f"{k} {' '.join(map(str, v))}\n" for k, v in t2s.UNITS.items()))
    (data / "units_shape").write_text("".join(f"{k} {len(v)}\n" for k, v in t2s.UNITS.items()))
    TokenList.build(t2s.PHONEMES.values()).save(data / "tokens.txt")
    options = ["--config", str(t2s.TUNING / "train_t2s_mini.yaml"), "--token_list", str(data / "tokens.txt"),
               f"--model_conf=unit_vocab_size={t2s.UNIT_VOCAB}", "--batch_size", "2"]
    for split in ("train", "valid"):
        options += [f"--{split}_data_path_and_name_and_type", f"{data / 'phonemes'},phonemes,text",
                    f"--{split}_data_path_and_name_and_type", f"{data / 'units'},units,text_int",
                    f"--{split}_shape_file", str(data / "units_shape")]
    return "t2s_train", options


def aligner_training(tmp: Path) -> Training:
    train = aligner.make_data_dir(tmp / "train", [f"tr{i}" for i in range(4)], seed=0)
    valid = aligner.make_data_dir(tmp / "valid", ["cv0", "cv1"], seed=1)
    options = []
    for split, path in (("train", train), ("valid", valid)):
        for name in aligner.NAMES:
            options += [f"--{split}_data_path_and_name_and_type", f"{path}/{name}.scp,{name},sound",
                        f"--{split}_shape_file", f"{path}/{name}_shape"]
    return "ali_train", ["--config", str(aligner.CONFIG), *options, "--batch_size", "2",
                         "--model_conf", "hidden_channels=8"]


def reseparation_training(tmp: Path) -> Training:
    TokenList(reseparation.TOKENS).save(tmp / "tokens.txt")
    train = reseparation.make_data_dir(tmp / "train", ["tr0", "tr1"], seed=0)
    valid = reseparation.make_data_dir(tmp / "valid", ["cv0"], seed=1)
    options = []
    for split, path in (("train", train), ("valid", valid)):
        for name, kind in (("speech_mix", "sound"), ("phonemes", "text"), ("speech_ref", "sound")):
            file = path / (name if kind == "text" else f"{name}.scp")
            options += [f"--{split}_data_path_and_name_and_type", f"{file},{name},{kind}"]
        for name in ("speech_mix", "phonemes", "speech_ref"):
            options += [f"--{split}_shape_file", f"{path}/{name}_shape"]
    return "resep_train", ["--config", str(reseparation.MINI_CONFIG), *options, "--token_list",
                           str(tmp / "tokens.txt"), *reseparation.SHRINK, "--batch_size", "2"]


def ger_training(tmp: Path) -> Training:
    texts = [text for nbest, target in ger.UTTERANCES.values() for text in (*split_nbest(nbest), target)]
    save_tokenizer(train_sentencepiece_tokenizer(texts + [GER_PROMPT]), tmp / "tokenizer")
    train, valid = ger.write_data_dir(tmp / "train"), ger.write_data_dir(tmp / "valid")
    data = [f"--{split}_data_path_and_name_and_type={path}/{name},{name},text"
            for split, path in (("train", train), ("valid", valid)) for name in ("nbest", "text_ct")]
    # Two utterances, one step an epoch: two epochs, as a parameter DDP waits for in vain stops the second step.
    return "ger_train", ["--config", str(ger.MINI_CONFIG), "--tokenizer_dir", str(tmp / "tokenizer"), *data,
                         "--train_shape_file", str(ger.write_shape(train)), "--valid_shape_file",
                         str(ger.write_shape(valid)), "--batch_size", "2", "--model_conf", ger.TINY_LM,
                         "--max_epoch", "2"]


def slm_ss_training(tmp: Path) -> Training:
    """test_slm_ss_task.py's data (a tiny DAC's tokens of the references) and shrunk mini SLM-SS."""
    codec = slm_ss.save_tiny_codec(tmp / "codec.pth")
    train = slm_ss.make_data_dir(tmp / "train", [f"tr{i}" for i in range(4)], 0, codec)
    valid = slm_ss.make_data_dir(tmp / "valid", ["cv0", "cv1"], 1, codec)
    return "slm_ss_train", ["--config", str(slm_ss.MINI_CONFIG), *slm_ss.data_args(train, valid), "--codec",
                            str(codec), *slm_ss.SHRINK, "--batch_size", "2"]


TASKS: Dict[str, Callable[[Path], Training]] = {
    "separator": separator_training,
    "corrector": corrector_training,
    "synthesizer_ar_nar": synthesizer_training("ar_nar"),
    "synthesizer_masked": synthesizer_training("masked"),
    "text_to_semantic": t2s_training,
    "aligner": aligner_training,
    "reseparation": reseparation_training,
    "ger": ger_training,
    "slm_ss": slm_ss_training,
}


def launch_training(cwd: Path, command: List[str], num_nodes: int = 1, cmd_backend: str = "local",
                    path: Tuple[Path, ...] = ()) -> str:
    """stage_lib.sh's launch_training of `command` with --ngpu 0, as sepalm.sh calls it; the job log."""
    (cwd / "utils").exists() or (cwd / "utils").symlink_to(REPO / "utils")
    script = (f"set -euo pipefail; python={shlex.quote(sys.executable)}; ngpu=0; num_nodes={num_nodes}; "
              f"train_num_threads=1; cmd_backend={cmd_backend}; . {RECIPE}/cmd.sh; . {RECIPE}/scripts/stage_lib.sh; "
              f"launch_training exp/train.log {shlex.join(command)}")
    search_path = os.pathsep.join([*map(str, path), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {**os.environ, "PATH": search_path, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # A process group of its own, so that a rank stuck in a collective can be stopped: SIGTERM
    # makes the job runner stop every process of its job (torchrun's ranks have sessions of their own).
    launch = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = launch.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(launch.pid, signal.SIGTERM)
        try:
            _, stderr = launch.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            _, stderr = launch.communicate()
        stderr += f"\nstopped after {TIMEOUT_SECONDS} s"
    log = (cwd / "exp/train.log").read_text(errors="replace") if (cwd / "exp/train.log").exists() else ""
    assert launch.returncode == 0, f"{stderr[-2000:]}\n{log[-6000:]}"
    return log


def assert_ranks_trained_in_sync(exp: Path) -> None:
    ranks = [torch.load(exp / f"ddp_rank{rank}.pth", map_location="cpu", weights_only=True)
             for rank in range(WORLD_SIZE)]
    for rank in ranks:
        assert (rank["wrapped_by"], rank["backend"], rank["world_size"]) == ("DistributedDataParallel", "gloo",
                                                                            WORLD_SIZE)
        assert rank["keys"], "a rank trained on nothing"
    first, second = ranks
    assert not set(first["keys"]) & set(second["keys"]), "the ranks trained on the same utterances"
    assert first["trained"].keys() == second["trained"].keys()
    differing = [name for name in first["trained"] if not torch.equal(first["trained"][name], second["trained"][name])]
    assert not differing, f"parameters differ between the ranks: {differing}"
    moved = [name for name, value in first["trained"].items() if not torch.equal(value, first["initial"][name])]
    assert moved, "no parameter changed: nothing was trained"
    # ESPnet's own record of the last epoch (rank 0's checkpoint): losses averaged over the ranks.
    reporter = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]
    stats = reporter["stats"][reporter["epoch"]]
    for split in ("train", "valid"):
        assert math.isfinite(stats[split]["loss"]), f"{split} loss {stats[split]['loss']}"


# Slurm's two commands as the recipe's multi-node job uses them, on this machine: `sbatch --wait`
# runs each array task of the script; `srun` starts one task per node of the job
# (--ntasks-per-node=1), each "node" a local process with the variables of a job step's task.
FAKE_SBATCH = """#!/usr/bin/env bash
script=${@: -1}
range=$(sed -n 's/^#SBATCH --array=\\([0-9]*-[0-9]*\\).*/\\1/p' "$script")
nodes=$(sed -n 's/^#SBATCH --nodes=\\([0-9]*\\)$/\\1/p' "$script")
echo 4242
code=0
for i in $(seq "${range%-*}" "${range#*-}"); do
    SLURM_ARRAY_TASK_ID=$i SLURM_JOB_NUM_NODES=${nodes:-1} bash "$script" || code=$?
done
exit $code
"""
FAKE_SRUN = """#!/usr/bin/env bash
[ "$1" = --export=ALL ] || { echo "srun: the recipe passes --export=ALL first, got $1" >&2; exit 2; }
shift
nodes=${SLURM_JOB_NUM_NODES:?srun outside a job}
pids=()
for ((node = 0; node < nodes; node++)); do
    SLURM_PROCID=$node SLURM_NODEID=$node SLURM_LOCALID=0 SLURM_NTASKS=$nodes SLURM_STEP_NUM_NODES=$nodes \\
        SLURM_STEP_NODELIST=localhost "$@" &
    pids+=($!)
done
code=0
for pid in "${pids[@]}"; do wait "$pid" || code=$?; done
exit $code
"""


def fake_slurm(directory: Path) -> Path:
    directory.mkdir()
    for name, script in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN)):
        (directory / name).write_text(script)
        (directory / name).chmod(0o755)
    return directory


# Each training costs 14-15 s of CPU, two ESPnet imports most of it: the three costliest (the
# corrector and GER setups also train a tokenizer) run with the integration tests, so that the
# rest of the file takes about a minute on two free cores.
SLOW_TASKS = ("corrector", "reseparation", "ger")


@pytest.mark.parametrize("task", [pytest.param(task, marks=pytest.mark.integration) if task in SLOW_TASKS else task
                                  for task in TASKS])
def test_ranks_stay_in_sync_through_the_recipes_multi_node_job(task, tmp_path):
    """--num_nodes 2 --ngpu 0: utils/slurm.sh's sbatch script, srun, ESPnet's --dist_launcher
    slurm and file:// rendezvous (test/egs2/test_slurm_launch.py checks the command with GPUs)."""
    bin_name, options = TASKS[task](tmp_path)
    exp = tmp_path / "exp"
    log = launch_training(tmp_path, [sys.executable, str(WORKER), bin_name, *ONE_EPOCH, *options,
                                     "--output_dir", str(exp)],
                          num_nodes=2, cmd_backend="slurm", path=(fake_slurm(tmp_path / "slurm_bin"),))
    assert "#SBATCH --nodes=2" in (tmp_path / "exp/q/train.sbatch").read_text()
    assert "--dist_launcher slurm --dist_init_method file://" in log.splitlines()[0]
    assert_ranks_trained_in_sync(exp)


def test_ranks_stay_in_sync_under_torchrun(tmp_path):
    """The single-node launch (utils/run.sh, the recipe's --ngpu 0 options) under torchrun: its
    RANK/WORLD_SIZE make each process one of ESPnet's nodes, rendezvous env://."""
    bin_name, options = aligner_training(tmp_path)
    exp = tmp_path / "exp"
    log = launch_training(tmp_path, [*TORCHRUN, str(WORKER), bin_name, *ONE_EPOCH, *options, "--output_dir", str(exp)])
    assert log.splitlines()[0].endswith("--ngpu 0 --multiprocessing_distributed true --dist_backend gloo")
    assert_ranks_trained_in_sync(exp)
