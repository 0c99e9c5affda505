"""Copy some utterances of a data dir (a key list, the first/last N, or N at random) to another."""
import argparse
import sys

from sepalm_espnet.data.data_dir import subset_data_dir
from sepalm_espnet.data.kaldi_dir import DataDirError


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="utils/subset_data_dir.sh", description=__doc__)
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--keys", dest="key_file", metavar="FILE",
                        help="file whose first column lists the keys")
    choice.add_argument("--first", type=int, metavar="N", help="the first N utterances (sorted)")
    choice.add_argument("--last", type=int, metavar="N", help="the last N utterances")
    choice.add_argument("--random", dest="random_count", type=int, metavar="N",
                        help="N utterances at random")
    parser.add_argument("--seed", type=int, default=0, help="random seed for --random")
    parser.add_argument("src_dir")
    parser.add_argument("dest_dir")
    args = parser.parse_args(argv)
    try:
        subset_data_dir(args.src_dir, args.dest_dir, args.key_file, args.first, args.last,
                        args.random_count, args.seed)
    except DataDirError as exc:
        sys.exit(f"subset_data_dir: {exc}")


if __name__ == "__main__":
    main()
