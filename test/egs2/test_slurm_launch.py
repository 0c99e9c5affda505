"""The training job the recipe submits to Slurm for --num_nodes N --ngpu M: stage_lib.sh's
launch_training through cmd.sh's slurm backend, read from utils/slurm.sh --dry-run (nothing is
submitted, no Slurm needed). test/tasks/test_ddp.py runs the same job on this machine, its
sbatch and srun stood in for, with --ngpu 0.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple


REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2/TEMPLATE/sepalm1"
TRAINING = ["python", "-m", "sepalm_espnet.bin.sep_train", "--config", "conf/train_sep.yaml"]


class SlurmJob(NamedTuple):
    submission: str  # the sbatch command line
    directives: List[str]  # the script's #SBATCH options
    job: List[str]  # what the array task runs after the local job runner: the log, then the command


def launch(cwd: Path, ngpu: int, num_nodes: int, cmd_backend: str = "slurm", log: str = "exp/sep/train.log",
           train_num_threads: int = 1) -> subprocess.CompletedProcess:
    """sepalm.sh's training launch with these options; the slurm backend only prints its job."""
    (cwd / "utils").exists() or (cwd / "utils").symlink_to(REPO / "utils")
    dry_run = "cuda_cmd+=' --dry-run'; " if cmd_backend == "slurm" else ""
    script = (f"set -euo pipefail; python=python; ngpu={ngpu}; num_nodes={num_nodes}; "
              f"train_num_threads={train_num_threads}; cmd_backend={cmd_backend}; . {RECIPE}/cmd.sh; {dry_run}"
              f". {RECIPE}/scripts/stage_lib.sh; launch_training {log} {shlex.join(TRAINING)}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)


def slurm_job(run: subprocess.CompletedProcess, train_num_threads: int = 1) -> SlurmJob:
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    [exec_line] = [line for line in lines if line.startswith("exec ")]
    runner = [sys.executable, "-m", "sepalm_espnet.bin.run_jobs", "local", "--num_threads", str(train_num_threads),
              "JOB=${SLURM_ARRAY_TASK_ID}"]
    argv = shlex.split(exec_line)[1:]
    assert argv[:len(runner)] == runner, exec_line
    return SlurmJob(lines[0], [line.split(" ", 1)[1] for line in lines if line.startswith("#SBATCH ")],
                    argv[len(runner):])


def assert_init_file_in(option: str, exp: Path) -> None:
    """ESPnet's file:// rendezvous, a new file in the experiment dir (each launch its own)."""
    assert re.fullmatch(rf"file://{re.escape(str(exp))}/\.dist_init_\d+", option), option


def test_multi_node_gpu_job_is_one_srun_task_per_node_that_espnet_forks_per_gpu(tmp_path):
    job = slurm_job(launch(tmp_path, ngpu=4, num_nodes=2, train_num_threads=8), train_num_threads=8)
    assert job.submission == "# sbatch --wait --parsable exp/sep/q/train.sbatch"
    for directive in ("--nodes=2", "--ntasks-per-node=1", "--gres=gpu:4", "--cpus-per-task=8",
                      f"--chdir={tmp_path.resolve()}", "--output=exp/sep/q/train.out"):
        assert directive in job.directives, job.directives
    log, *command = job.job
    assert log == "exp/sep/train.log"
    # ESPnet reads the node rank and count from srun's step, and forks one process per GPU.
    *espnet, init_method = command
    assert espnet == ["srun", "--export=ALL", *TRAINING, "--ngpu", "4", "--multiprocessing_distributed", "true",
                      "--dist_launcher", "slurm", "--dist_init_method"]  # NCCL: ESPnet's default backend
    assert_init_file_in(init_method, tmp_path.resolve() / "exp/sep")
    assert not (tmp_path / "exp").exists()  # a dry run writes nothing


def test_multi_node_cpu_job_trains_over_gloo(tmp_path):
    job = slurm_job(launch(tmp_path, ngpu=0, num_nodes=2))
    assert "--nodes=2" in job.directives and not any(d.startswith("--gres") for d in job.directives)
    _, *command = job.job
    assert command[:-1] == ["srun", "--export=ALL", *TRAINING, "--ngpu", "0", "--multiprocessing_distributed", "true",
                            "--dist_backend", "gloo", "--dist_launcher", "slurm", "--dist_init_method"]


def test_single_node_job_is_espnets_own_multi_gpu_launch(tmp_path):
    job = slurm_job(launch(tmp_path, ngpu=4, num_nodes=1))
    assert "--gres=gpu:4" in job.directives and not any(d.startswith("--nodes") for d in job.directives)
    assert job.job == ["exp/sep/train.log", *TRAINING, "--ngpu", "4", "--multiprocessing_distributed", "true"]


def test_multi_node_job_needs_the_slurm_backend(tmp_path):
    run = launch(tmp_path, ngpu=4, num_nodes=2, cmd_backend="local")
    assert run.returncode != 0 and "--num_nodes 2 needs cmd_backend=slurm (cmd.sh)" in run.stderr
    assert not (tmp_path / "exp").exists()


def test_multi_node_job_with_an_absolute_expdir_meets_in_it(tmp_path):
    """launch_training wrote file://$(pwd)/$(dirname log): an absolute --expdir put the rendezvous
    file under <cwd>/<expdir>, which does not exist (test failed before)."""
    exp = tmp_path.resolve() / "experiments/sep"
    log, *command = slurm_job(launch(tmp_path, ngpu=4, num_nodes=2, log=f"{exp}/train.log")).job
    assert log == f"{exp}/train.log"
    assert_init_file_in(command[-1], exp)
