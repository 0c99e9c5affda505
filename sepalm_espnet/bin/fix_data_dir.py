"""Keep only the utterances every table has, sort the tables, rebuild spk2utt (backup: .backup/)."""
import argparse
import sys

from sepalm_espnet.data.data_dir import fix_data_dir
from sepalm_espnet.data.kaldi_dir import DataDirError


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="utils/fix_data_dir.sh", description=__doc__)
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)
    try:
        dropped = fix_data_dir(args.data_dir)
    except DataDirError as exc:
        sys.exit(f"fix_data_dir: {exc}")
    for name, keys in dropped.items():
        print(f"fix_data_dir: {args.data_dir}/{name}: dropped {len(keys)} "
              f"(e.g. {', '.join(keys[:3])})", file=sys.stderr)


if __name__ == "__main__":
    main()
