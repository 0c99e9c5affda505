"""Score a packed system on a Kaldi data dir, as stage 14 scores the recipe's (console script
`sepalm-evaluate`); what it writes: sepalm_espnet.evaluate."""
from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.evaluate import EvaluateOptions, evaluate
from sepalm_espnet.utils import cli


def main(argv=None):
    parser = cli.standard_parser(__doc__)
    cli.add_dataclass_options(parser, EvaluateOptions)
    args = cli.parse_args(parser, argv)
    cli.run_main("sepalm-evaluate", lambda: evaluate(cli.options_from_args(args, EvaluateOptions)),
                 (ValueError, OSError, DataDirError))


if __name__ == "__main__":
    main()
