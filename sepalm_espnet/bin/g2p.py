"""Stage 9: phonemes of a Kaldi text (`h ə l oʊ | w ɜː l d`), or the phoneme token list.

Worker (one JOB's keys): --text T --key_file K --output_dir O writes O/phonemes.
Token list, from the training set only (other sets are encoded with it, <unk> for the rest):
--token_list_from train/phonemes --token_list_out phoneme_token_list.txt.
"""
from pathlib import Path

from sepalm_espnet.data.kaldi_dir import read_key_file, read_text
from sepalm_espnet.synthesizer.g2p import G2p, TokenList, phonemize_text_file
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--text", help="`key transcript` lines")
    parser.add_argument("--language", default="en-us", help="espeak-ng voice")
    parser.add_argument("--token_list_from", help="build the token list from this phoneme text instead")
    parser.add_argument("--token_list_out", help="the token list: <blank> <unk> phonemes... <sos/eos>")
    parser.add_argument("--key_file", default=None, help="only these keys (a JOB split)")
    parser.add_argument("--output_dir", help="the worker's output directory")
    return parser


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    if bool(args.token_list_from) != bool(args.token_list_out) or bool(args.text) == bool(args.token_list_from):
        parser.error("give --text and --output_dir, or --token_list_from and --token_list_out")

    def work():
        if args.token_list_from:
            TokenList.build(read_text(args.token_list_from).values()).save(args.token_list_out)
        else:
            phonemize_text_file(args.text, Path(args.output_dir) / "phonemes", G2p(args.language),
                                read_key_file(args.key_file))

    cli.run_main("g2p", work)


if __name__ == "__main__":
    main()
