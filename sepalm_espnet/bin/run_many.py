"""Runs one bin entry point over several argument sets in one process: a recipe job that covers
every set of a stage pays Python's and ESPnet's start-up (tens of seconds) once, not per set.

    python -m sepalm_espnet.bin.run_many --plan plan.1 -- sepalm_espnet.bin.sep_inference --fs 16000
Each plan line is one run's own arguments, tab-separated, added after the common ones.
"""
import argparse
import importlib
import logging
import sys


def read_plan(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", required=True, help="one run a line: its arguments, tab-separated")
    parser.add_argument("module", help="the bin module, e.g. sepalm_espnet.bin.asr_teacher")
    parser.add_argument("common", nargs=argparse.REMAINDER, help="arguments of every run")
    args = parser.parse_args(argv)
    runs = read_plan(args.plan)
    if not runs:  # a job beyond every step's split count
        return
    entry = importlib.import_module(args.module).main
    for number, run in enumerate(runs, start=1):
        logging.getLogger(__name__).info("run %d of %d: %s %s", number, len(runs), args.module, " ".join(run))
        try:
            entry([*args.common, *run])
        except SystemExit as exc:
            if exc.code not in (None, 0):
                print(f"run_many: run {number} of {args.plan} failed: {' '.join(run)}", file=sys.stderr)
                raise


if __name__ == "__main__":
    main()
