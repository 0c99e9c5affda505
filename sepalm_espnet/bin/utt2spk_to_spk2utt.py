"""utt2spk -> spk2utt: written atomically to the output file, or to stdout without one."""
import argparse
import sys

from sepalm_espnet.data.data_dir import write_or_print
from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, utt2spk_to_spk2utt


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="utils/utt2spk_to_spk2utt.sh", description=__doc__)
    parser.add_argument("utt2spk")
    parser.add_argument("spk2utt", nargs="?")
    args = parser.parse_args(argv)
    try:
        spk2utt = utt2spk_to_spk2utt(read_kv(args.utt2spk))
        write_or_print(args.spk2utt, {spk: " ".join(utts) for spk, utts in spk2utt.items()})
    except DataDirError as exc:
        sys.exit(f"utt2spk_to_spk2utt: {exc}")


if __name__ == "__main__":
    main()
