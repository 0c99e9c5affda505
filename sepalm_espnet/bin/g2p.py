"""Stage 9: phonemes of a Kaldi text file ("h ə l oʊ | w ɜː l d"), optionally its token list.

Build --token_list_out from the training set only; other sets are encoded with it (<unk>).
"""
import argparse
import logging
import sys

from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.synthesizer.g2p import G2p, TokenList, phonemize_text_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--text", required=True, help="`key transcript` lines")
    parser.add_argument("--output", required=True, help="`key phonemes` lines, same keys")
    parser.add_argument("--token_list_out", default=None, help="write <blank> <unk> phonemes... <sos/eos>")
    parser.add_argument("--language", default="en-us", help="espeak-ng voice")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        phonemes = phonemize_text_file(args.text, args.output, G2p(args.language))
        if args.token_list_out:
            TokenList.build(phonemes.values()).save(args.token_list_out)
    except DataDirError as exc:
        sys.exit(f"g2p: {exc}")


if __name__ == "__main__":
    main()
