"""Write stage 14's demo page (metrics.demo_page): mixtures, references and every system's output
as players with spectrograms, metrics and transcript diffs, in one folder to copy to a web server.

    python -m sepalm_espnet.bin.make_demo --manifest exp/systems.tsv --test_sets test \\
        --mixture_dir "dump/raw/{set}" --reference_dir "exp/sep_x/decode/{set}" --outdir exp/demo
"""
from sepalm_espnet.metrics.demo_page import DemoOptions, make_demo
from sepalm_espnet.utils import cli


def main(argv=None):
    parser = cli.standard_parser(__doc__)
    cli.add_dataclass_options(parser, DemoOptions)
    args = cli.parse_args(parser, argv)
    cli.run_main("make_demo", lambda: make_demo(cli.options_from_args(args, DemoOptions)))


if __name__ == "__main__":
    main()
