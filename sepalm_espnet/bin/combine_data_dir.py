"""Merge data dirs into one; --prefix (once per source, in order) keeps their ids apart."""
import argparse
import sys

from sepalm_espnet.data.data_dir import combine_data_dirs
from sepalm_espnet.data.kaldi_dir import DataDirError


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="utils/combine_data_dir.sh", description=__doc__)
    parser.add_argument("--prefix", action="append", dest="prefixes",
                        help="id prefix of the next source dir; give one per source or none")
    parser.add_argument("dest_dir")
    parser.add_argument("src_dirs", nargs="+")
    args = parser.parse_args(argv)
    try:
        left_out = combine_data_dirs(args.dest_dir, args.src_dirs, args.prefixes)
    except DataDirError as exc:
        sys.exit(f"combine_data_dir: {exc}")
    if left_out:
        print(f"combine_data_dir: left out files not in every source (or differing): "
              f"{', '.join(left_out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
