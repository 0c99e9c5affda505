"""The corrector's tokenizer directory (stage 7, before training): text tokenizer + unit tokens.

Mini recipe, a small BPE SentencePiece tokenizer trained on the training transcripts:
    python -m sepalm_espnet.bin.train_tokenizer --text data/train/text_pt data/train/text_ct \\
        --vocab_size 500 --kmeans_dir exp/kmeans --output_dir exp/cor_mini/tokenizer
Pretrained LM, its own tokenizer with whatever unit tokens it lacks added:
    python -m sepalm_espnet.bin.train_tokenizer --base_tokenizer fnlp/SpeechGPT-7B-cm \\
        --kmeans_dir exp/kmeans --output_dir exp/cor_speechgpt/tokenizer
"""
import argparse
import logging

from sepalm_espnet.corrector.tokenizer import (
    add_unit_tokens,
    load_tokenizer,
    save_tokenizer,
    train_sentencepiece_tokenizer,
)
from sepalm_espnet.corrector.units import load_kmeans
from sepalm_espnet.data.kaldi_dir import read_text


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", nargs="+", help="Kaldi text files (`key words`) to train on")
    source.add_argument("--base_tokenizer", help="transformers tokenizer directory or hub id to extend")
    parser.add_argument("--vocab_size", type=int, default=500, help="SentencePiece vocabulary (with --text)")
    parser.add_argument("--kmeans_dir", required=True, help="the units' k-means (one token per cluster)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    )
    if args.text:
        texts = [text for path in args.text for text in read_text(path).values()]
        tokenizer = train_sentencepiece_tokenizer(texts, args.vocab_size)
        logging.info("trained a %d-token SentencePiece BPE on %d transcripts", len(tokenizer), len(texts))
    else:
        tokenizer = load_tokenizer(args.base_tokenizer)
    added = add_unit_tokens(tokenizer, load_kmeans(args.kmeans_dir)[0].n_clusters)
    save_tokenizer(tokenizer, args.output_dir)
    logging.info("added %d unit/marker tokens: %d tokens in %s", added, len(tokenizer), args.output_dir)


if __name__ == "__main__":
    main()
