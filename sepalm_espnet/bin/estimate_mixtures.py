"""The mixture of every estimate, keyed like the estimates (`<utt>_spk<n>`): a task that loads a
mixture beside each estimate's transcript and reference needs one key space (Table 3 (a)).

    python -m sepalm_espnet.bin.estimate_mixtures --mixtures dump/raw/train/wav.scp \\
        --estimates exp/sep_x/decode/train/wav.scp --output exp/sep_x/decode/train/mixtures/mix.scp
"""
from sepalm_espnet.data.kaldi_dir import read_kv, write_kv
from sepalm_espnet.data.speakers import per_estimate
from sepalm_espnet.utils import cli


def main(argv=None):
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--mixtures", required=True, help="scp keyed by utterance (a data dir's wav.scp)")
    parser.add_argument("--estimates", required=True, help="scp keyed <utt>_spk<n>: its keys are the output's")
    parser.add_argument("--output", required=True)
    args = cli.parse_args(parser, argv)
    cli.run_main("estimate_mixtures", lambda: write_kv(
        args.output, per_estimate(read_kv(args.mixtures), read_kv(args.estimates), args.mixtures)))


if __name__ == "__main__":
    main()
