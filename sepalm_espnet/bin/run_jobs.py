"""Entry point of utils/run.sh and utils/slurm.sh (run_jobs <local|slurm> [opts] JOB=1:N log cmd)."""
import sys

from sepalm_espnet.utils.jobs import main as run_jobs


def main() -> None:
    sys.exit(run_jobs(sys.argv[1:]))


if __name__ == "__main__":
    main()
