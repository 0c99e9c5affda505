"""Paper §4.4 out-of-domain test set: WSJ0-2mix tt speech + MUSAN or DEMAND noise, SNR U[-6, 3] dB."""
import argparse
import logging
import sys

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.data.libri2mix_wham import CorpusError
from sepalm_espnet.data.ood_mix import NOISE_CORPORA, make_ood_set


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--noise_corpus", choices=list(NOISE_CORPORA), required=True)
    parser.add_argument("--noise_root", default="", help="db.sh's MUSAN or DEMAND")
    parser.add_argument("--wsj0_2mix", default="", help="db.sh's WSJ0_2MIX")
    parser.add_argument("--datadir", default="data")
    parser.add_argument("--audio_root", required=True, help="where the generated wavs go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--wsj0_text_dir", default="", help="WSJ0 .dot transcripts (optional)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        make_ood_set(args.noise_corpus, args.wsj0_2mix, args.noise_root, args.datadir, args.audio_root,
                     args.seed, args.nj, args.wsj0_text_dir or None)
    except (CorpusError, AudioError, DataDirError) as exc:  # a corpus to fix, not a bug: no traceback
        sys.exit(f"{parser.prog}: error: {exc}")


if __name__ == "__main__":
    main()
