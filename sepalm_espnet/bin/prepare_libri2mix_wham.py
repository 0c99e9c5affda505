"""Stage 1 of egs2/libri2mix_wham: data/<corpus>_{train,dev,test} and their union train_all, dev_all."""
import argparse
import logging
import sys

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.data.libri2mix_wham import CORPORA, CorpusError, CorpusRoots, prepare_corpora


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--datadir", default="data")
    for corpus in ("librispeech",) + CORPORA:
        parser.add_argument(f"--{corpus}", default="", help=f"root, db.sh's {corpus.upper()}")
    parser.add_argument("--wsj0_text_dir", default="", help="WSJ0 .dot transcripts (optional)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    roots = CorpusRoots(args.librispeech, args.libri2mix, args.wham, args.whamr)
    try:
        prepare_corpora(args.datadir, args.corpora, roots, args.wsj0_text_dir or None)
    except (CorpusError, AudioError, DataDirError) as exc:  # a corpus to fix, not a bug: no traceback
        sys.exit(f"{parser.prog}: error: {exc}")


if __name__ == "__main__":
    main()
