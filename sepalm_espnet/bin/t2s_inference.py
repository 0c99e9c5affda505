"""Semantic units of phoneme texts with a trained text-to-semantic model (greedy decoding).

Writes --output as `key u1 u2 ...` lines (text_int), sorted by key: the `semantic` data of
the masked synthesizer (syn_train, syn_inference --semantic).
"""
import argparse
import logging
import sys

from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.synthesizer.t2s import load_text_to_semantic, units_of_text_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--train_config", required=True, help="the model's config.yaml (it carries the token list)")
    parser.add_argument("--model_file", required=True, help="the model's weights (.pth)")
    parser.add_argument("--phonemes", required=True, help="`key phonemes` text (stage 9's G2P)")
    parser.add_argument("--output", required=True, help="`key u1 u2 ...` lines")
    parser.add_argument("--key_file", default=None, help="only these keys (a JOB split)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_length", type=int, default=None, help="most units per utterance (default: by phonemes)")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        model, token_list = load_text_to_semantic(args.train_config, args.model_file, "cuda" if args.ngpu > 0 else "cpu")
        units_of_text_file(model, token_list, args.phonemes, args.output, args.key_file, args.batch_size, args.max_length)
    except DataDirError as exc:
        sys.exit(f"t2s_inference: {exc}")


if __name__ == "__main__":
    main()
