"""Separation scoring of per-speaker dirs: SI-SNR(i), SDR(i), PESQ(i), ESTOI(i) with PIT (stage 14
scores the flat layout through bin/score_systems.py).

Score (optionally one JOB's keys):
    python -m sepalm_espnet.bin.score_separation --ref_dir data/test \\
        --est_dir exp/sep/decode/test --out_dir exp/sep/score/test/split.1 --key_file keys.1.scp
Merge the JOB splits:
    python -m sepalm_espnet.bin.score_separation --out_dir exp/sep/score/test \\
        --merge_dirs exp/sep/score/test/split.1 exp/sep/score/test/split.2
Outputs metrics.tsv, permutation and summary.json (see sepalm_espnet.metrics.separation).
With --permutation_only, only the `permutation` file (PIT by SI-SNR): cheap enough for training sets.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from sepalm_espnet.data.kaldi_dir import read_key_file
from sepalm_espnet.metrics.separation import (
    PERMUTATION_FILE,
    merge_score_dirs,
    permutations_of_dirs,
    read_permutation,
    score_dirs,
    write_permutation,
    write_scores,
)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out_dir", required=True, help="where the score files are written")
    parser.add_argument("--ref_dir", help="Kaldi dir with wav.scp (mixture) and spk<n>.scp")
    parser.add_argument("--est_dir", help="dir with the separated spk<n>.scp")
    parser.add_argument("--key_file", help="score only the keys in this file's first column")
    parser.add_argument("--merge_dirs", nargs="+", help="merge these score dirs instead of scoring")
    parser.add_argument("--permutation_only", action="store_true", help="write only `permutation`")
    parser.add_argument(
        "--permutation", help="score under this stored match (stage 4's) instead of PIT: systems built on the separator"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.merge_dirs and (args.ref_dir or args.est_dir or args.key_file):
        parser.error("--merge_dirs takes no --ref_dir, --est_dir or --key_file")
    if args.merge_dirs:
        merge_score_dirs(args.merge_dirs, args.out_dir)
    elif args.ref_dir and args.est_dir:
        keys = read_key_file(args.key_file)
        if args.permutation_only:
            permutations = permutations_of_dirs(args.ref_dir, args.est_dir, keys)
            write_permutation(Path(args.out_dir) / PERMUTATION_FILE, permutations)
        else:
            stored = read_permutation(args.permutation) if args.permutation else None
            write_scores(args.out_dir, score_dirs(args.ref_dir, args.est_dir, keys, stored))
    else:
        parser.error("give --ref_dir and --est_dir, or --merge_dirs")


if __name__ == "__main__":
    main()
