"""Stage 14: RESULTS.md from the summary.json of every (system, test set) score directory.

    python -m sepalm_espnet.bin.make_results --output exp/RESULTS.md --test_sets test \\
        --system "SepFormer=exp/sep_x/decode/{test_set}/score" --metadata config=conf/x.yaml
"""
import argparse

from sepalm_espnet.metrics.report import write_results
from sepalm_espnet.metrics.separation import read_summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--system", action="append", required=True, metavar="NAME=DIR_WITH_{test_set}")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    systems = dict(item.split("=", 1) for item in args.system)
    results = {t: {name: read_summary(d.format(test_set=t)) for name, d in systems.items()} for t in args.test_sets}
    write_results(args.output, results, metadata=dict(item.split("=", 1) for item in args.metadata))


if __name__ == "__main__":
    main()
