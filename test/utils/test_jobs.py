import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
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
               ">>", f"{tmp_path}/counts", "&&", "sleep", "0.5", "&&", "rm", f"{running}/JOB")
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


@pytest.mark.parametrize("spec", ["JOB=1:0", "JOB=1:-1", "JOB=1:abc", "JOB=abc", "JOB=0:2",
                                  "JOB=1:", "JOB=-1"])
def test_bad_job_specs_are_errors_not_log_names(tmp_path, spec):
    with pytest.raises(JobSpecError, match="job"):
        parse_job_array([spec, "log.JOB", "true"])
    # From the command line: a usage error, and no stray file named after the spec (`1=1:abc`).
    result = run_script("run.sh", spec, "log.JOB", "touch", "ran", cwd=tmp_path)
    assert result.returncode == 2 and spec in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--max-jobs-run", "--num_threads", "--num_nodes"])
@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_runner_counts_must_be_positive(tmp_path, option, value):
    result = subprocess.run(
        [str(REPO / "utils" / "run.sh"), option, value, "JOB=1:2", "log.JOB", "true"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=20)
    assert result.returncode == 2
    assert f"'{value}'" in result.stderr and "positive" in result.stderr
    assert list(tmp_path.iterdir()) == []


def _job_writing_pid_then_marker(tmp_path, delay):
    """A job command recording its pid in pid.JOB, then (after `delay` s) writing marker.JOB."""
    code = (f"import os, time; open('pid.JOB', 'w').write(str(os.getpid())); "
            f"time.sleep({delay}); open('marker.JOB', 'w').write('x')")
    return [sys.executable, "-c", code]


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid):
    """Running (a zombie, already dead but not reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _kill_leftovers(tmp_path, pattern):
    """Kill only the job processes this test started (their pid files), should any survive."""
    for pid_file in tmp_path.glob(pattern):
        pid = int(pid_file.read_text() or 0)
        with contextlib.suppress(OSError):
            if str(tmp_path) in Path(f"/proc/{pid}/cmdline").read_text() or \
                    str(tmp_path) in os.readlink(f"/proc/{pid}/cwd"):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_jobs_die_with_the_recipe_process_group(tmp_path):
    # The recipe: a shell in its own process group, as a terminal or nohup starts one.
    recipe = subprocess.Popen(
        ["bash", "-c", f"{REPO}/utils/run.sh JOB=1:2 log.JOB "
                       f"{' '.join(map(shlex.quote, _job_writing_pid_then_marker(tmp_path, 3)))}"
                       "; echo recipe went on > after"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        assert _wait_for(lambda: all((tmp_path / f"pid.{i}").is_file() and
                                     (tmp_path / f"pid.{i}").read_text() for i in (1, 2)))
        pids = [int((tmp_path / f"pid.{i}").read_text()) for i in (1, 2)]
        os.killpg(recipe.pid, signal.SIGKILL)
        recipe.wait()
        # Well before the jobs' own 3 s are up.
        assert _wait_for(lambda: not any(map(_alive, pids)), timeout=1.5), "jobs outlived kill -9"
        time.sleep(3)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["log.1", "log.2", "pid.1", "pid.2"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(recipe.pid, signal.SIGKILL)
        _kill_leftovers(tmp_path, "pid.*")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_jobs_die_with_the_runner_killed_alone(tmp_path):
    runner = subprocess.Popen(
        [str(REPO / "utils" / "run.sh"), "JOB=1:2", "log.JOB",
         *_job_writing_pid_then_marker(tmp_path, 3)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        assert _wait_for(lambda: all((tmp_path / f"pid.{i}").is_file() and
                                     (tmp_path / f"pid.{i}").read_text() for i in (1, 2)))
        pids = [int((tmp_path / f"pid.{i}").read_text()) for i in (1, 2)]
        runner.kill()  # kill -9 of the runner's pid only: no chance to stop its jobs
        runner.wait()
        assert _wait_for(lambda: not any(map(_alive, pids)), timeout=1.5), \
            "jobs outlived the runner"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
        _kill_leftovers(tmp_path, "pid.*")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_runner_forwards_sigterm_and_sigint_to_whole_jobs_and_waits(tmp_path, signum):
    # Each job is a pipeline: the signal must reach its first part too, not just bash.
    job = [*_job_writing_pid_then_marker(tmp_path, 30), "|", "cat"]
    runner = subprocess.Popen([str(REPO / "utils" / "run.sh"), "JOB=1:2", "log.JOB", *job],
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert _wait_for(lambda: all((tmp_path / f"pid.{i}").is_file() and
                                     (tmp_path / f"pid.{i}").read_text() for i in (1, 2)))
        pids = [int((tmp_path / f"pid.{i}").read_text()) for i in (1, 2)]
        runner.send_signal(signum)  # the runner alone, as `kill PID` does
        _, stderr = runner.communicate(timeout=20)
        assert runner.returncode == -signum, stderr  # died of it, as shells expect
        # The runner returned only once its jobs had ended, and logged how they ended.
        assert not any(map(_alive, pids))
        for i in (1, 2):
            code = logged_exit_code(tmp_path / f"log.{i}")
            assert code is not None and code != 0
        assert not list(tmp_path.glob("marker.*"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
        _kill_leftovers(tmp_path, "pid.*")


def test_paths_with_spaces(tmp_path):
    dump = tmp_path / "my dump"
    dump.mkdir()
    (dump / "keys.scp").write_text("a x\nb y\nc z\n")
    split = run_script("split_scp.sh", "my dump/keys.scp", "my dump/keys.1.scp",
                       "my dump/keys.2.scp", cwd=tmp_path)
    assert split.returncode == 0, split.stderr
    result = run_script("run.sh", "JOB=1:2", "dir with space/log.JOB.log", "cut", "-d", " ",
                        "-f1", "my dump/keys.JOB.scp", ">", "my dump/out JOB.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (dump / "out 1.txt").read_text() == "a\nb\n"
    assert (dump / "out 2.txt").read_text() == "c\n"
    assert logged_exit_code(tmp_path / "dir with space" / "log.2.log") == 0


def test_slurm_script_quotes_paths_with_spaces(tmp_path):
    cwd = tmp_path / "recipe dir"
    cwd.mkdir()
    result = run_script("slurm.sh", "--dry-run", "JOB=1:2", "exp/my logs/x.JOB.log", "cat",
                        "my dump/k.JOB.scp", cwd=cwd)
    assert result.returncode == 0, result.stderr
    # sbatch reads each #SBATCH line as shell-like words (quotes group, `#` starts a comment).
    directives = [shlex.split(line[len("#SBATCH "):])
                  for line in result.stdout.splitlines() if line.startswith("#SBATCH ")]
    assert all(len(words) == 1 for words in directives), directives
    assert [f"--chdir={cwd}"] in directives
    assert ["--output=exp/my logs/q/x.%a.out"] in directives
    exec_line = result.stdout.splitlines()[-1]
    assert shlex.split(exec_line)[-4:] == ["JOB=${SLURM_ARRAY_TASK_ID}", "exp/my logs/x.JOB.log",
                                          "cat", "my dump/k.JOB.scp"]
