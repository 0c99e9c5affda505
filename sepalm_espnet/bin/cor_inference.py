"""Stage 8: corrector inference, units -> text_pt (preliminary), text_ct (corrected), status, fallback.json.

One JOB's keys of one separated speaker:
    python -m sepalm_espnet.bin.cor_inference --train_config exp/cor/config.yaml \\
        --model_file exp/cor/valid.acc.ave.pth --units dump/units/test/units_spk1 \\
        --teacher_text exp/asr/test/text_pt_spk1 --key_file keys.1.scp --output_dir exp/cor/decode/test/spk1/split.1
Merge the JOB splits (duplicate keys are an error; fallback.json counts are summed):
    python -m sepalm_espnet.bin.cor_inference --merge_dirs exp/cor/decode/test/spk1/split.* \\
        --output_dir exp/cor/decode/test/spk1
`--zero_shot` decodes with the LoRA adapter disabled (paper Table 3 (h)). Decoding defaults are
the paper's (sampling, top-k 40, top-p 0.9, temperature 0.1, at most 1024 tokens).
"""
import argparse
import logging
import sys

from espnet2.utils.types import str2bool

from sepalm_espnet.corrector.generate import (
    CorrectorGenerator,
    DecodeOptions,
    correct_units_file,
    merge_correction_dirs,
)
from sepalm_espnet.data.kaldi_dir import read_key_file


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--merge_dirs", nargs="+", help="merge these inference dirs instead of decoding")
    parser.add_argument("--train_config", help="the corrector's config.yaml (default: beside --model_file)")
    parser.add_argument("--model_file", help="trained weights (.pth)")
    parser.add_argument("--units", help="Kaldi text `key 12 45 7` (stage 6)")
    parser.add_argument("--teacher_text", help="fallback transcripts (Whisper on the separated speech)")
    parser.add_argument("--key_file", help="decode only these keys (a JOB split)")
    parser.add_argument("--zero_shot", action="store_true", help="base LM only: LoRA adapter disabled")
    defaults = DecodeOptions()
    parser.add_argument("--do_sample", type=str2bool, default=defaults.do_sample)
    for name in ("top_k", "top_p", "temperature", "max_length", "batch_size", "seed"):
        parser.add_argument(f"--{name}", type=type(getattr(defaults, name)), default=getattr(defaults, name))
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        if args.merge_dirs:
            merge_correction_dirs(args.merge_dirs, args.output_dir)
            return
        if not (args.model_file and args.units):
            parser.error("give --model_file and --units (and --train_config), or --merge_dirs")
        generator = CorrectorGenerator.from_files(
            args.train_config, args.model_file, "cuda" if args.ngpu > 0 else "cpu", zero_shot=args.zero_shot,
            **{name: getattr(args, name) for name in
               ("do_sample", "top_k", "top_p", "temperature", "max_length", "batch_size", "seed")},
        )
        correct_units_file(generator, args.units, args.output_dir, args.teacher_text, read_key_file(args.key_file))
    except ValueError as exc:
        sys.exit(f"cor_inference: {exc}")


if __name__ == "__main__":
    main()
