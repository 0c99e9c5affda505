"""Mean ± 95 % confidence interval per test and system of the listening-test results files that
the NMOS / SMOS pages of bin/make_mos.py download (metrics.listening_test).

    python -m sepalm_espnet.bin.mos_aggregate results/*.json --results_md exp/RESULTS.md
"""
from sepalm_espnet.metrics.listening_test import mos_aggregate
from sepalm_espnet.utils import cli


def main(argv=None):
    parser = cli.standard_parser(__doc__)
    parser.add_argument("results", nargs="+", help="results JSON files, one per listener and test")
    parser.add_argument("--results_md", default=None, help="write/replace the listening-test section of this file")
    args = cli.parse_args(parser, argv)
    cli.run_main("mos_aggregate", lambda: mos_aggregate(args.results, args.results_md))


if __name__ == "__main__":
    main()
