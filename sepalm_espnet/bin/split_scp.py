"""Split a key file into contiguous, balanced pieces, one per output file (Kaldi split_scp.pl)."""
import argparse
import sys

from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.utils.split_scp import split_scp


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="utils/split_scp.sh", description=__doc__)
    parser.add_argument("in_scp")
    # "*": with no outputs, split_scp names the input (empty, or no pieces asked for).
    parser.add_argument("out_scps", nargs="*", help="one output file per piece")
    args = parser.parse_args(argv)
    try:
        split_scp(args.in_scp, args.out_scps)
    except DataDirError as exc:
        sys.exit(f"split_scp: {exc}")


if __name__ == "__main__":
    main()
