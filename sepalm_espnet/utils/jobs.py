"""Run.pl-style job arrays: `JOB=1:N log/x.JOB.log cmd args...`, locally or through Slurm.

Stage scripts call `${cmd} JOB=1:${nj} log.JOB.log python -m ...` without knowing where the jobs
run; cmd.sh picks the backend (utils/run.sh or utils/slurm.sh). Both backends leave the same
per-job log: a header with the command, the job's output, and a footer with its exit code and
elapsed time, so a failure reads the same on a laptop and on a cluster.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

FOOTER_PATTERN = re.compile(r"^# Ended \(code (-?\d+)\)", re.MULTILINE)
SLURM_CONFIG_KEYS = ("partition", "gpu", "mem", "time", "num_threads", "account", "qos",
                     "max_jobs_run", "num_nodes")
SLURM_INTEGER_KEYS = ("gpu", "num_threads", "max_jobs_run", "num_nodes")
DEFAULT_SLURM_CONFIG = "conf/slurm.conf"


class JobSpecError(ValueError):
    """The job-array command line is malformed."""


@dataclass(frozen=True)
class JobArray:
    """Jobs first..last of one command; `variable` in the command and log is the job id."""

    variable: str
    first: int
    last: int
    log_template: str
    command_args: Tuple[str, ...]

    @property
    def ids(self) -> range:
        return range(self.first, self.last + 1)

    def log(self, job_id: int) -> Path:
        return Path(self.log_template.replace(self.variable, str(job_id)))

    def command(self, job_id: int) -> str:
        return shell_command(self.command_args).replace(self.variable, str(job_id))


def shell_command(argv: Sequence[str]) -> str:
    """Join argv for bash as run.pl does.

    Arguments without whitespace go in verbatim, so an escaped `\\|` or `\\>` on the caller's
    command line still builds a pipe or redirection; the others are quoted as one word.
    """
    return " ".join(arg if re.fullmatch(r"\S+", arg) else shlex.quote(arg) for arg in argv)


def parse_job_array(args: Sequence[str]) -> JobArray:
    """Parse `[VAR=first:last | VAR=id] log cmd...`; without a spec, one job logs to `log`."""
    args = list(args)
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?", args[0]) if args else None
    if match:
        variable, first = match.group(1), int(match.group(2))
        last = int(match.group(3)) if match.group(3) is not None else first
        args = args[1:]
    else:
        variable, first, last = "JOB", 1, 1
    if len(args) < 2:
        raise JobSpecError("expected [JOB=1:N] <log> <command> [args...]")
    if first < 1 or last < first:
        raise JobSpecError(f"bad job range {first}:{last} (need 1 <= first <= last)")
    log_template = args[0]
    if last > first and variable not in log_template:
        raise JobSpecError(f"{last - first + 1} jobs would share the log {log_template}; "
                           f"put {variable} in its name")
    return JobArray(variable, first, last, log_template, tuple(args[1:]))


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%a %b %d %H:%M:%S %Z %Y")


def _start_job(jobs: JobArray, job_id: int,
               env: Mapping[str, str]) -> Tuple[subprocess.Popen, float]:
    log = jobs.log(job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = jobs.command(job_id)
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"# {command}\n# Started at {_now()}\n#\n")
        f.flush()
        # Own process group, so stopping the job also stops the pipelines it started.
        process = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL,
                                   stdout=f, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    return process, time.monotonic()


def _finish_job(log: Path, code: int, elapsed: float) -> None:
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"# Ended (code {code}) at {_now()}, elapsed time {elapsed:.2f} seconds\n")


def run_local(jobs: JobArray, max_jobs_run: int,
              num_threads: Optional[int] = None) -> Dict[int, int]:
    """Run the jobs, at most `max_jobs_run` at a time; return each job id's exit code."""
    env = dict(os.environ)
    if num_threads is not None:
        env["OMP_NUM_THREADS"] = str(num_threads)
    pending = list(jobs.ids)
    running: Dict[int, Tuple[subprocess.Popen, float]] = {}
    codes: Dict[int, int] = {}
    try:
        while pending or running:
            while pending and len(running) < max_jobs_run:
                job_id = pending.pop(0)
                running[job_id] = _start_job(jobs, job_id, env)
            for job_id, (process, started) in list(running.items()):
                if process.poll() is not None:
                    codes[job_id] = process.returncode
                    _finish_job(jobs.log(job_id), process.returncode, time.monotonic() - started)
                    del running[job_id]
            time.sleep(0.05)
    finally:
        # Reached with jobs still running only on an error or Ctrl-C: leave no orphans behind.
        for process, _ in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    return codes


def logged_exit_code(log: Path) -> Optional[int]:
    """The exit code in a job log's footer; None when the job never finished (killed, lost)."""
    try:
        footers = FOOTER_PATTERN.findall(log.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return None
    return int(footers[-1]) if footers else None


def report_failures(jobs: JobArray, codes: Mapping[int, Optional[int]], program: str) -> int:
    """Print the failed job ids with their logs; return the exit status for the caller."""
    failed = [job_id for job_id in jobs.ids if codes.get(job_id) != 0]
    if not failed:
        return 0
    total = len(jobs.ids)
    print(f"{program}: {len(failed)} of {total} jobs failed:", file=sys.stderr)
    for job_id in failed:
        code = codes.get(job_id)
        status = f"exit code {code}" if code is not None else "did not finish"
        print(f"  job {job_id} ({status}): {jobs.log(job_id)}", file=sys.stderr)
    return 1


def read_slurm_config(path: Path) -> Dict[str, str]:
    """`key value` lines (keys as the slurm.sh options, e.g. `partition gpu`); `#` comments."""
    config: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            key = parts[0].replace("-", "_")
            if key not in SLURM_CONFIG_KEYS or len(parts) != 2:
                raise JobSpecError(f"{path}:{lineno}: expected '<key> <value>' with key one of "
                                   f"{', '.join(SLURM_CONFIG_KEYS)}")
            if key in SLURM_INTEGER_KEYS and not parts[1].isdigit():
                raise JobSpecError(f"{path}:{lineno}: {key} must be a whole number")
            config[key] = parts[1]
    return config


def slurm_paths(jobs: JobArray) -> Tuple[Path, str]:
    """Where the batch script goes and Slurm's own per-task output (`%a`: the array index)."""
    log = Path(jobs.log_template)
    stem = log.name[: -len(".log")] if log.name.endswith(".log") else log.name
    range_name = f"{jobs.first}-{jobs.last}"
    script = log.parent / "q" / f"{stem.replace(jobs.variable, range_name)}.sbatch"
    output = log.parent / "q" / f"{stem.replace(jobs.variable, '%a')}.out"
    return script, str(output)


def slurm_batch_script(jobs: JobArray, options: Mapping[str, str]) -> str:
    """A Slurm array script whose task i runs job i through the local runner (same log format)."""
    _, output = slurm_paths(jobs)
    stem = Path(jobs.log_template).name.split(".")[0]
    array = f"{jobs.first}-{jobs.last}"
    if options.get("max_jobs_run"):
        array += f"%{options['max_jobs_run']}"
    directives = [f"--job-name={stem}", f"--array={array}", f"--output={output}",
                  f"--chdir={os.getcwd()}"]
    for key, flag in (("partition", "partition"), ("account", "account"), ("qos", "qos"),
                      ("time", "time"), ("mem", "mem"), ("num_threads", "cpus-per-task")):
        if options.get(key):
            directives.append(f"--{flag}={options[key]}")
    if int(options.get("gpu") or 0) > 0:
        directives.append(f"--gres=gpu:{options['gpu']}")
    if int(options.get("num_nodes") or 1) > 1:
        # One task per node; the job's own `srun` starts it there (ESPnet --dist_launcher slurm).
        directives += [f"--nodes={options['num_nodes']}", "--ntasks-per-node=1"]
    runner = [sys.executable, "-m", "sepalm_espnet.bin.run_jobs", "local"]
    if options.get("num_threads"):
        runner += ["--num_threads", str(options["num_threads"])]
    task_spec = f"{jobs.variable}=${{SLURM_ARRAY_TASK_ID}}"
    job_args = shlex.join([jobs.log_template, *jobs.command_args])
    lines = ["#!/usr/bin/env bash"] + [f"#SBATCH {d}" for d in directives]
    lines += ["", f"exec {shlex.join(runner)} {task_spec} {job_args}", ""]
    return "\n".join(lines)


def run_slurm(jobs: JobArray, options: Mapping[str, str],
              dry_run: bool) -> Optional[Dict[int, Optional[int]]]:
    """Submit the array with `sbatch --wait`; return each job's logged exit code.

    In a dry run, print the sbatch command and script instead and return None.
    """
    script_path, _ = slurm_paths(jobs)
    script = slurm_batch_script(jobs, options)
    command = ["sbatch", "--wait", "--parsable", str(script_path)]
    if dry_run:
        print(f"# {shlex.join(command)}\n{script}", end="")
        return None
    script_path.parent.mkdir(parents=True, exist_ok=True)
    script_path.write_text(script, encoding="utf-8")
    for job_id in jobs.ids:  # a stale footer must not pass for this run's result
        jobs.log(job_id).unlink(missing_ok=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    slurm_job_id = process.stdout.readline().strip().split(";")[0]
    try:
        process.communicate()
    except KeyboardInterrupt:
        if slurm_job_id:
            subprocess.run(["scancel", slurm_job_id], check=False)
        raise
    return {job_id: logged_exit_code(jobs.log(job_id)) for job_id in jobs.ids}


def _option_names(name: str) -> List[str]:
    """Accept both `--max-jobs-run` (Kaldi) and `--max_jobs_run` (ESPnet cmd.sh) spellings."""
    return sorted({f"--{name}", f"--{name.replace('_', '-')}"})


def build_parser(backend: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="utils/run.sh" if backend == "local" else "utils/slurm.sh",
        usage="%(prog)s [options] [JOB=1:N] <log> <command> [args...]",
        description="Run a job array; JOB in the log path and command becomes the job id.",
    )
    parser.add_argument(*_option_names("max_jobs_run"), type=int,
                        help="most jobs running at once (local default: number of CPUs)")
    parser.add_argument(*_option_names("num_threads"), type=int,
                        help="threads per job: OMP_NUM_THREADS (and Slurm --cpus-per-task)")
    parser.add_argument("--gpu", type=int, help="GPUs per job (Slurm --gres; ignored locally)")
    parser.add_argument("--mem", help="memory per job, e.g. 8G (Slurm --mem; ignored locally)")
    parser.add_argument(*_option_names("num_nodes"), type=int,
                        help="nodes per job (Slurm --nodes, one task each; local: only 1)")
    if backend == "slurm":
        parser.add_argument("--partition")
        parser.add_argument("--time", help="time limit, e.g. 2-00:00:00")
        parser.add_argument("--account")
        parser.add_argument("--qos")
        parser.add_argument("--config", help=f"`key value` defaults for these options "
                                              f"(default: {DEFAULT_SLURM_CONFIG} if present)")
        parser.add_argument(*_option_names("dry_run"), action="store_true",
                            help="print the sbatch command and script; submit nothing")
    return parser


def split_options(argv: Sequence[str], flags: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split argv into the runner's leading options and the job part (`JOB=.. log cmd...`).

    Needed because the job's own command carries options the runner must not parse.
    """
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in ("-h", "--help") or "=" in argv[i] or argv[i] in flags:
            i += 1
        else:
            i += 2
    return list(argv[:i]), list(argv[i:])


def main(argv: Sequence[str]) -> int:
    """`<local|slurm> [options] [JOB=1:N] log cmd...`; exit status 1 when any job failed."""
    if not argv or argv[0] not in ("local", "slurm"):
        print("usage: python -m sepalm_espnet.bin.run_jobs <local|slurm> [options] "
              "[JOB=1:N] <log> <command> [args...]", file=sys.stderr)
        return 2
    backend = argv[0]
    parser = build_parser(backend)
    option_args, job_args = split_options(argv[1:], _option_names("dry_run"))
    args = parser.parse_args(option_args)
    try:
        jobs = parse_job_array(job_args)
    except JobSpecError as exc:
        parser.error(str(exc))
    if backend == "local":
        # Turn `kill` into an exception, so run_local stops the jobs it started on the way out.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        if (args.num_nodes or 1) > 1:
            parser.error(f"--num_nodes {args.num_nodes}: a local run has one node (use slurm)")
        max_jobs_run = args.max_jobs_run or os.cpu_count() or 1
        codes = run_local(jobs, max_jobs_run, args.num_threads)
        return report_failures(jobs, codes, parser.prog)
    config_path = Path(args.config or DEFAULT_SLURM_CONFIG)
    options: Dict[str, str] = {}
    if args.config or config_path.is_file():
        try:
            options = read_slurm_config(config_path)
        except (OSError, JobSpecError) as exc:
            parser.error(str(exc))
    for key in SLURM_CONFIG_KEYS:
        if getattr(args, key) is not None:
            options[key] = str(getattr(args, key))
    if not args.dry_run and shutil.which("sbatch") is None:
        parser.error("sbatch not found: run on a Slurm submit host, or use --dry-run")
    codes = run_slurm(jobs, options, args.dry_run)
    if codes is None:
        return 0
    if None in codes.values():
        _, output = slurm_paths(jobs)
        print(f"{parser.prog}: Slurm's own output of task N (time limit, memory, node failure): "
              f"{output.replace('%a', 'N')}", file=sys.stderr)
    return report_failures(jobs, codes, parser.prog)
