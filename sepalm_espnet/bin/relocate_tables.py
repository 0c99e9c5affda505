"""Point a moved-aside step dir's tables (*.scp) at the files that moved with it (stage_lib's
move_aside): `python -m sepalm_espnet.bin.relocate_tables --old dump/raw/test --new dump/raw/test.old.X`."""
from sepalm_espnet.data.kaldi_dir import relocate_tables
from sepalm_espnet.utils import cli


def main(argv=None):
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--old", required=True, help="the dir's name before it was moved")
    parser.add_argument("--new", required=True, help="its name now")
    args = cli.parse_args(parser, argv)
    cli.run_main("relocate_tables", lambda: relocate_tables(args.old, args.new))


if __name__ == "__main__":
    main()
