"""Per-speaker Kaldi files between the recipe's speaker layouts (see sepalm_espnet/data/speakers.py).

    speaker_files reorder --permutation P --input data/spk1.scp data/spk2.scp --output a_spk1 a_spk2
    speaker_files flatten --input units_spk1 units_spk2 --output units
    speaker_files unflatten --input speech.scp --output spk1.scp spk2.scp
Text and scp files alike; empty values (an empty transcript) are kept.
"""
import argparse
import sys

from sepalm_espnet.data.kaldi_dir import DataDirError, read_kv, write_kv
from sepalm_espnet.data.speakers import flatten, reorder, unflatten
from sepalm_espnet.metrics.separation import read_permutation


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["reorder", "flatten", "unflatten"])
    parser.add_argument("--input", nargs="+", required=True)
    parser.add_argument("--output", nargs="+", required=True)
    parser.add_argument("--permutation", help="reorder: stage 4's permutation file")
    args = parser.parse_args(argv)
    try:
        inputs = [read_kv(path, allow_empty_value=True) for path in args.input]
        if args.action == "reorder":
            if not args.permutation or len(args.input) != len(args.output):
                parser.error("reorder needs --permutation and one --output per --input")
            outputs = reorder(inputs, read_permutation(args.permutation), args.permutation)
        elif args.action == "flatten":
            outputs = [flatten(inputs)]
        else:
            outputs = unflatten(inputs[0], len(args.output), args.input[0])
        if len(outputs) != len(args.output):
            parser.error(f"{args.action} writes {len(outputs)} file(s): got {len(args.output)} --output")
        for path, entries in zip(args.output, outputs):
            write_kv(path, entries)
    except DataDirError as exc:
        sys.exit(f"speaker_files: {exc}")


if __name__ == "__main__":
    main()
