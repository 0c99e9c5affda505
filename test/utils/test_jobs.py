import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sepalm_espnet.utils.jobs import (
    JobArray,
    JobSpecError,
    logged_exit_code,
    parse_job_array,
    run_local,
    shell_command,
)

REPO = Path(__file__).resolve().parents[2]


def run_script(name, *args, cwd, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([str(REPO / "utils" / name), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True)


def test_parse_job_array_substitutes_the_job_variable():
    jobs = parse_job_array(["JOB=2:3", "log/x.JOB.log", "echo", "keys.JOB.scp", "a b"])
    assert list(jobs.ids) == [2, 3]
    assert jobs.log(3) == Path("log/x.3.log")
    assert jobs.command(2) == "echo keys.2.scp 'a b'"


def test_parse_job_array_single_job_and_errors():
    assert list(parse_job_array(["log/x.log", "true"]).ids) == [1]
    assert list(parse_job_array(["N=5", "log/x.N.log", "true"]).ids) == [5]
    with pytest.raises(JobSpecError, match="share the log"):
        parse_job_array(["JOB=1:2", "log/x.log", "true"])
    with pytest.raises(JobSpecError, match="bad job range"):
        parse_job_array(["JOB=3:2", "log/x.JOB.log", "true"])


def test_shell_command_keeps_escaped_operators_like_run_pl():
    assert shell_command(["echo", "a b", "|", "wc", "-l", ""]) == "echo 'a b' | wc -l ''"


def test_local_jobs_write_logs_with_header_and_footer(tmp_path):
    jobs = JobArray("JOB", 1, 3, str(tmp_path / "log" / "x.JOB.log"),
                    ("echo", "job JOB of", "$OMP_NUM_THREADS"))
    assert run_local(jobs, max_jobs_run=3, num_threads=2) == {1: 0, 2: 0, 3: 0}
    for job_id in (1, 2, 3):
        log = tmp_path / "log" / f"x.{job_id}.log"
        lines = log.read_text().splitlines()
        assert lines[0] == f"# echo 'job {job_id} of' $OMP_NUM_THREADS"
        assert f"job {job_id} of 2" in lines
        assert re.match(r"# Ended \(code 0\) at .*, elapsed time [\d.]+ seconds", lines[-1])
        assert logged_exit_code(log) == 0


def test_local_jobs_respect_max_jobs_run(tmp_path):
    running = tmp_path / "running"
    running.mkdir()
    # Each job records how many jobs are running while it is.
    command = ("touch", f"{running}/JOB", "&&", "ls", str(running), "|", "wc", "-l",
               ">>", f"{tmp_path}/counts", "&&", "sleep", "0.2", "&&", "rm", f"{running}/JOB")
    jobs = JobArray("JOB", 1, 4, str(tmp_path / "x.JOB.log"), command)
    assert set(run_local(jobs, max_jobs_run=2).values()) == {0}
    counts = [int(x) for x in (tmp_path / "counts").read_text().split()]
    assert len(counts) == 4 and max(counts) == 2


def test_run_sh_names_failed_jobs(tmp_path):
    result = run_script("run.sh", "--max-jobs-run", "2", "--gpu", "0", "--mem", "2G",
                        "JOB=1:3", "log/x.JOB.log", "test", "JOB", "-ne", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert "1 of 3 jobs failed" in result.stderr
    assert "job 2 (exit code 1): log/x.2.log" in result.stderr
    assert logged_exit_code(tmp_path / "log" / "x.2.log") == 1
    assert logged_exit_code(tmp_path / "log" / "x.3.log") == 0


def test_slurm_dry_run_prints_the_sbatch_array_script(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "slurm.conf").write_text(
        "# cluster defaults\npartition cpu  # overridden below\ntime 1:00:00\n")
    result = run_script("slurm.sh", "--dry-run", "--partition", "gpu", "--gpu", "1",
                        "--mem=8G", "--num_threads", "4", "--max-jobs-run", "2",
                        "JOB=1:4", "log/x.JOB.log", "python", "-m", "m", "--keys", "k.JOB.scp",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("# sbatch --wait --parsable log/q/x.1-4.sbatch\n#!/usr/bin/env bash\n")
    for directive in ("--array=1-4%2", "--partition=gpu", "--time=1:00:00", "--mem=8G",
                      "--gres=gpu:1", "--cpus-per-task=4", "--output=log/q/x.%a.out",
                      f"--chdir={tmp_path}"):
        assert f"#SBATCH {directive}\n" in out
    assert ("-m sepalm_espnet.bin.run_jobs local --num_threads 4 JOB=${SLURM_ARRAY_TASK_ID} "
            "log/x.JOB.log python -m m --keys k.JOB.scp\n") in out
    assert not (tmp_path / "log").exists()



def test_multi_node_job_gets_one_task_per_node_on_slurm_and_is_refused_locally(tmp_path):
    result = run_script("slurm.sh", "--dry-run", "--gpu", "4", "--num_nodes", "2", "log/train.log",
                        "srun", "python", "-m", "trainer", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n" in result.stdout
    local = run_script("run.sh", "--num_nodes", "2", "log/train.log", "true", cwd=tmp_path)
    assert local.returncode != 0 and "a local run has one node" in local.stderr

def test_slurm_waits_and_reports_failures_through_a_fake_sbatch(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    sbatch = fake_bin / "sbatch"
    # Runs each array task in turn, as `sbatch --wait` would on a cluster.
    sbatch.write_text("""#!/usr/bin/env bash
script=${@: -1}
range=$(sed -n 's/^#SBATCH --array=\\([0-9]*-[0-9]*\\).*/\\1/p' "$script")
echo 42
code=0
for i in $(seq ${range%-*} ${range#*-}); do SLURM_ARRAY_TASK_ID=$i bash "$script" || code=$?; done
exit $code
""")
    sbatch.chmod(0o755)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}"}
    result = run_script("slurm.sh", "JOB=1:3", "log/x.JOB.log", "test", "JOB", "-ne", "3",
                        cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "job 3 (exit code 1): log/x.3.log" in result.stderr
    assert "job 1" not in result.stderr
    assert (tmp_path / "log" / "q" / "x.1-3.sbatch").is_file()


def test_run_jobs_requires_a_backend():
    result = subprocess.run([sys.executable, "-m", "sepalm_espnet.bin.run_jobs", "log", "true"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr
