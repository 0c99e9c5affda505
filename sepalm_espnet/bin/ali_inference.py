"""Stage 13 aligner inference: s̃ from the separated ŝ and the re-synthesized s* of one speaker.

    python -m sepalm_espnet.bin.ali_inference --train_config exp/ali/config.yaml \\
        --model_file exp/ali/valid.loss.best.pth --est_scp exp/sep/decode/test/spk1.scp \\
        --syn_scp exp/syn/decode/test/spk1/speech.scp --key_file keys.1.scp --output_dir out/split.1
Merge the JOB splits (speech.scp only; the wavs stay where they are):
    python -m sepalm_espnet.bin.ali_inference --output_dir out --merge_dirs out/split.1 out/split.2
Writes <output_dir>/wavs/<key>.wav (float WAV at the aligner's rate) and sorted <output_dir>/speech.scp.
"""
from __future__ import annotations

import argparse
import logging
import sys

from sepalm_espnet.aligner.inference import AlignerInference, align_scp, merge_speech_scps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--train_config", default=None, help="default: config.yaml beside --model_file")
    parser.add_argument("--model_file", help="trained aligner weights (.pth or .safetensors)")
    parser.add_argument("--est_scp", help="separated estimates ŝ of one speaker")
    parser.add_argument("--syn_scp", help="their re-synthesized s* (any length: cropped or padded)")
    parser.add_argument("--key_file", default=None, help="only these keys (a JOB split)")
    parser.add_argument("--merge_dirs", nargs="+", help="merge these output dirs instead of aligning")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        if args.merge_dirs:
            merge_speech_scps(args.merge_dirs, args.output_dir)
        elif args.model_file and args.est_scp and args.syn_scp:
            aligner = AlignerInference.from_files(args.train_config, args.model_file, args.device)
            align_scp(aligner, args.est_scp, args.syn_scp, args.output_dir, args.key_file)
        else:
            parser.error("give --model_file, --est_scp and --syn_scp, or --merge_dirs")
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"ali_inference: {exc}")


if __name__ == "__main__":
    main()
