"""Write the NMOS and SMOS listening-test pages (metrics.listening_test): static pages that save
each listener's ratings as a JSON file for bin/mos_aggregate.py.

    python -m sepalm_espnet.bin.make_mos --manifest exp/systems.tsv --test_sets test \\
        --mixture_dir "dump/raw/{set}" --reference_dir "exp/sep_x/decode/{set}" --outdir exp/mos \\
        --num_utterances 30 --seed 0
"""
from sepalm_espnet.metrics.listening_test import MosOptions, make_mos
from sepalm_espnet.utils import cli


def main(argv=None):
    parser = cli.standard_parser(__doc__)
    cli.add_dataclass_options(parser, MosOptions)
    args = cli.parse_args(parser, argv)
    cli.run_main("make_mos", lambda: make_mos(cli.options_from_args(args, MosOptions)))


if __name__ == "__main__":
    main()
