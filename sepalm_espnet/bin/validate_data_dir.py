"""Check that a data dir's tables agree; every problem names the file and line to fix."""
import argparse
import sys

from sepalm_espnet.data.data_dir import find_problems


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="utils/validate_data_dir.sh", description=__doc__)
    parser.add_argument("--require-text", "--require_text", action="store_true",
                        help="transcripts (text_spkN for each spkN.scp, else text) must exist")
    parser.add_argument("--check_audio", "--check-audio", action="store_true",
                        help="read every audio file's header: refuse truncated files and "
                             "references or noise whose length or rate differs from the "
                             "mixture (commands ending in '|' are not run)")
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)
    problems = find_problems(args.data_dir, args.require_text, args.check_audio)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(f"validate_data_dir: {args.data_dir}: {len(problems)} problem(s)")
    print(f"validate_data_dir: {args.data_dir}: OK", file=sys.stderr)


if __name__ == "__main__":
    main()
