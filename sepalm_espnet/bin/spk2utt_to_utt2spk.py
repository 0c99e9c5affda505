"""spk2utt -> utt2spk: written atomically to the output file, or to stdout without one."""
import argparse
import sys

from sepalm_espnet.data.data_dir import read_spk2utt, write_or_print
from sepalm_espnet.data.kaldi_dir import DataDirError, spk2utt_to_utt2spk


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="utils/spk2utt_to_utt2spk.sh", description=__doc__)
    parser.add_argument("spk2utt")
    parser.add_argument("utt2spk", nargs="?")
    args = parser.parse_args(argv)
    try:
        write_or_print(args.utt2spk, spk2utt_to_utt2spk(read_spk2utt(args.spk2utt)))
    except DataDirError as exc:
        sys.exit(f"spk2utt_to_utt2spk: {exc}")


if __name__ == "__main__":
    main()
