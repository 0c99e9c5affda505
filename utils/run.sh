#!/usr/bin/env bash
# Run.pl-compatible local job runner: utils/run.sh [--max-jobs-run K] [--num_threads N]
#   [--gpu N] [--mem X] [JOB=1:N] log/x.JOB.log <command> [args...]
# JOB in the log path and command becomes the job id; jobs run in parallel through bash, each
# logging to its own file; exits 1 naming the failed jobs. Jobs die with the caller: they stay
# in its process group, get SIGKILL if the runner dies, and get the SIGTERM/SIGINT it gets.
# Paths may contain spaces. See sepalm_espnet/utils/jobs.py.
exec python -m sepalm_espnet.bin.run_jobs local "$@"
