"""Run.pl-style job arrays: `JOB=1:N log/x.JOB.log cmd args...`, locally or through Slurm.

Stage scripts call `${cmd} JOB=1:${nj} log.JOB.log python -m ...` without knowing where the jobs
run; cmd.sh picks the backend (utils/run.sh or utils/slurm.sh). Both backends leave the same
per-job log: a header with the command, the job's output, and a footer with its exit code and
elapsed time, so a failure reads the same on a laptop and on a cluster.

Local jobs live and die with the recipe: they stay in its process group (a `kill -9` of the
group or a Ctrl-C reaches them), each gets SIGKILL when the runner dies (PR_SET_PDEATHSIG),
and a SIGTERM/SIGINT/SIGHUP to the runner alone is passed on to every process of every job,
which the runner then waits for (SIGKILL after STOP_GRACE_SECONDS).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
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
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

FOOTER_PATTERN = re.compile(r"^# Ended \(code (-?\d+)\)", re.MULTILINE)
SLURM_CONFIG_KEYS = ("partition", "gpu", "mem", "time", "num_threads", "account", "qos",
                     "max_jobs_run", "num_nodes")
SLURM_INTEGER_KEYS = ("gpu", "num_threads", "max_jobs_run", "num_nodes")
DEFAULT_SLURM_CONFIG = "conf/slurm.conf"
STOP_GRACE_SECONDS = 10.0
# `NAME=...` as the first job argument is a job spec, never a log name (no `1=1:abc` log files).
JOB_SPEC_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=[^/]*")
JOB_SPEC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?")
_PR_SET_PDEATHSIG = 1


class JobSpecError(ValueError):
    """The job-array command line is malformed."""


class Interrupted(Exception):
    """A SIGTERM or SIGHUP reached the runner (SIGINT arrives as KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
    if args and JOB_SPEC_PREFIX.fullmatch(args[0]):
        spec = args.pop(0)
        match = JOB_SPEC.fullmatch(spec)
        if not match:
            raise JobSpecError(f"bad job spec {spec}: expected VAR=first:last or VAR=id, "
                               f"whole numbers (is nj set to a number?)")
        variable, first = match.group(1), int(match.group(2))
        last = int(match.group(3)) if match.group(3) is not None else first
        if first < 1 or last < first:
            raise JobSpecError(f"bad job range {spec} (need 1 <= first <= last)")
    else:
        variable, first, last = "JOB", 1, 1
    if len(args) < 2:
        raise JobSpecError("expected [JOB=1:N] <log> <command> [args...]")
    log_template = args[0]
    if last > first and variable not in log_template:
        raise JobSpecError(f"{last - first + 1} jobs would share the log {log_template}; "
                           f"put {variable} in its name")
    return JobArray(variable, first, last, log_template, tuple(args[1:]))


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%a %b %d %H:%M:%S %Z %Y")


def _die_with_runner() -> Optional[Callable[[], None]]:
    """A preexec_fn giving the job SIGKILL when the runner dies, even by `kill -9` (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    runner = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != runner:  # the runner died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _start_job(jobs: JobArray, job_id: int, env: Mapping[str, str],
               preexec: Optional[Callable[[], None]] = None) -> Tuple[subprocess.Popen, float]:
    log = jobs.log(job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = jobs.command(job_id)
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"# {command}\n# Started at {_now()}\n#\n")
        f.flush()
        # No session or process group of its own: a signal to the recipe's group (kill -9,
        # Ctrl-C) must reach the job and the pipelines it starts, not leave them running.
        process = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL,
                                   stdout=f, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=preexec)
    return process, time.monotonic()


def _process_tree(pid: int) -> List[int]:
    """pid and its descendants, from /proc (just pid where there is none)."""
    children: Dict[int, List[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def _alive(pid: int) -> bool:
    """Still running; a zombie no one reaps (orphans in a container) does not count."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            return True
        return False


def _signal_all(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _stop_jobs(processes: Sequence[subprocess.Popen], signum: int, grace: float) -> None:
    """Pass signum to every process of the jobs; SIGKILL what is left after `grace` seconds.

    Each process is signalled, not just the job's bash: bash dies of SIGTERM without passing it
    on, which would leave the rest of a pipeline running.
    """
    pids = sorted({pid for process in processes for pid in _process_tree(process.pid)})
    _signal_all(pids, signum)
    deadline = time.monotonic() + grace
    try:
        while time.monotonic() < deadline:
            for process in processes:
                process.poll()  # reap, so a finished job is not a zombie
            if not any(map(_alive, pids)):
                break
            time.sleep(0.05)
    except (KeyboardInterrupt, Interrupted):
        pass  # a second signal: stop waiting
    for process in processes:
        pids += _process_tree(process.pid) if process.poll() is None else []
    _signal_all([pid for pid in set(pids) if _alive(pid)], signal.SIGKILL)
    for process in processes:
        process.wait()


def _finish_job(log: Path, code: int, elapsed: float) -> None:
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"# Ended (code {code}) at {_now()}, elapsed time {elapsed:.2f} seconds\n")


def run_local(jobs: JobArray, max_jobs_run: int, num_threads: Optional[int] = None,
              stop_grace: float = STOP_GRACE_SECONDS) -> Dict[int, int]:
    """Run the jobs, at most `max_jobs_run` at a time; return each job id's exit code.

    On Ctrl-C (KeyboardInterrupt), Interrupted or any other error, the running jobs get that
    signal (SIGTERM for an error) and are waited for, their logs get a footer, and the
    exception goes on.
    """
    if max_jobs_run < 1:
        raise ValueError(f"max_jobs_run must be positive, got {max_jobs_run}")
    env = dict(os.environ)
    if num_threads is not None:
        env["OMP_NUM_THREADS"] = str(num_threads)
    preexec = _die_with_runner()
    pending = list(jobs.ids)
    running: Dict[int, Tuple[subprocess.Popen, float]] = {}
    codes: Dict[int, int] = {}
    try:
        while pending or running:
            while pending and len(running) < max_jobs_run:
                job_id = pending.pop(0)
                running[job_id] = _start_job(jobs, job_id, env, preexec)
            for job_id, (process, started) in list(running.items()):
                if process.poll() is not None:
                    codes[job_id] = process.returncode
                    _finish_job(jobs.log(job_id), process.returncode, time.monotonic() - started)
                    del running[job_id]
            time.sleep(0.05)
    except BaseException as exc:
        if running:
            signum = (exc.signum if isinstance(exc, Interrupted)
                      else signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM)
            _stop_jobs([process for process, _ in running.values()], signum, stop_grace)
            for job_id, (process, started) in running.items():
                _finish_job(jobs.log(job_id), process.returncode, time.monotonic() - started)
        raise
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
            if key in SLURM_INTEGER_KEYS and not (
                    parts[1].isdigit() and (key == "gpu" or int(parts[1]) > 0)):
                raise JobSpecError(f"{path}:{lineno}: {key} must be a whole number"
                                   f"{'' if key == 'gpu' else ' above 0'}")
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
    # sbatch splits #SBATCH lines into shell-like words: quote paths with spaces (or `#`).
    lines = ["#!/usr/bin/env bash"] + [f"#SBATCH {shlex.quote(d)}" for d in directives]
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
    except (KeyboardInterrupt, Interrupted):
        if slurm_job_id:
            subprocess.run(["scancel", slurm_job_id], check=False)
        raise
    return {job_id: logged_exit_code(jobs.log(job_id)) for job_id in jobs.ids}


def _option_names(name: str) -> List[str]:
    """Accept both `--max-jobs-run` (Kaldi) and `--max_jobs_run` (ESPnet cmd.sh) spellings."""
    return sorted({f"--{name}", f"--{name.replace('_', '-')}"})


def _count(minimum: int):
    """An argparse type: an integer >= minimum (0 jobs at once would wait forever)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not a {'positive' if minimum == 1 else 'non-negative'} integer")
        return value
    return parse


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def _die_of(signum: int) -> None:
    """Exit by the signal itself, so a calling shell sees the job array was killed."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # not reached unless the signal is blocked


def build_parser(backend: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="utils/run.sh" if backend == "local" else "utils/slurm.sh",
        usage="%(prog)s [options] [JOB=1:N] <log> <command> [args...]",
        description="Run a job array; JOB in the log path and command becomes the job id.",
    )
    parser.add_argument(*_option_names("max_jobs_run"), type=_count(1),
                        help="most jobs running at once (local default: number of CPUs)")
    parser.add_argument(*_option_names("num_threads"), type=_count(1),
                        help="threads per job: OMP_NUM_THREADS (and Slurm --cpus-per-task)")
    parser.add_argument("--gpu", type=_count(0),
                        help="GPUs per job (Slurm --gres; ignored locally)")
    parser.add_argument("--mem", help="memory per job, e.g. 8G (Slurm --mem; ignored locally)")
    parser.add_argument(*_option_names("num_nodes"), type=_count(1),
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
    # Turn `kill` into an exception, so the jobs are stopped and waited for on the way out.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:  # keep what nohup set up
            signal.signal(signum, _raise_interrupted)
    try:
        return _run(backend, parser, args, jobs)
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(f"{parser.prog}: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        _die_of(signum)
        raise


def _run(backend: str, parser: argparse.ArgumentParser, args: argparse.Namespace,
         jobs: JobArray) -> int:
    if backend == "local":
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
