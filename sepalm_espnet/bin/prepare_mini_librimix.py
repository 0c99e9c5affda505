"""Synthesize the offline mini LibriMix corpus and its data dirs (stage 1 of the mini recipe)."""
import argparse
import logging

from sepalm_espnet.data.mini_librimix import (
    add_arguments,
    config_from_args,
    prepare_mini_librimix,
)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    prepare_mini_librimix(args.corpus_dir, args.datadir, config_from_args(args), args.nj,
                          args.fortunes_dir)


if __name__ == "__main__":
    main()
