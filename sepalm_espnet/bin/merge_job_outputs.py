"""Joins the output.JOB dirs of recipe job arrays into their step dirs (see utils/job_outputs.py)."""
from sepalm_espnet.utils import cli
from sepalm_espnet.utils.job_outputs import merge_job_outputs


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--dirs", required=True, nargs="+", help="step dirs: their logdir/output.JOB are merged into them")
    parser.add_argument("--num_jobs", required=True, nargs="+", type=int, help="the job count of each step dir")
    return parser


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    if len(args.dirs) != len(args.num_jobs):
        parser.error(f"{len(args.dirs)} --dirs but {len(args.num_jobs)} --num_jobs")
    cli.run_main("merge_job_outputs", lambda: [merge_job_outputs(d, n) for d, n in zip(args.dirs, args.num_jobs)])


if __name__ == "__main__":
    main()
