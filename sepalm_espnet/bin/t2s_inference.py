"""Stage 11 worker: semantic units of phoneme texts with a trained text-to-semantic model
(greedy), written to <output_dir>/semantic as `key u1 u2 ...` (the masked synthesizer's
`semantic` input)."""
from pathlib import Path

from sepalm_espnet.synthesizer.t2s import T2SDecodeOptions, load_text_to_semantic, units_of_text_file
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--train_config", required=True, help="the model's config.yaml (it carries the token list)")
    parser.add_argument("--model_file", required=True, help="the model's weights (.pth)")
    parser.add_argument("--phonemes", required=True, help="`key phonemes` text (stage 9's G2P)")
    cli.add_decoder_options(parser, T2SDecodeOptions)
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)

    def work():
        model, token_list = load_text_to_semantic(args.train_config, args.model_file, args.device)
        units_of_text_file(model, token_list, args.phonemes, Path(args.output_dir) / "semantic", args.key_file,
                           options=cli.options_from_args(args, T2SDecodeOptions))

    cli.run_main("t2s_inference", work)


if __name__ == "__main__":
    main()
