#!/usr/bin/env bash
# Run.pl-compatible Slurm job runner: utils/slurm.sh [--partition P] [--gpu N] [--mem X]
#   [--time T] [--num_threads N] [--account A] [--qos Q] [--max-jobs-run K]
#   [--config conf/slurm.conf] [--dry-run] [JOB=1:N] log/x.JOB.log <command> [args...]
# Submits one `sbatch --array` job, waits for it, and exits 1 naming the failed jobs, like
# utils/run.sh. --dry-run prints the sbatch command and script instead of submitting.
# The config file holds defaults for the options as `key value` lines, e.g.
#     partition gpu
#     time 1-00:00:00
# and is read from conf/slurm.conf when present. See sepalm_espnet/utils/jobs.py.
exec python -m sepalm_espnet.bin.run_jobs slurm "$@"
