"""Stage 8 worker: corrector inference of one JOB's keys, units -> text_pt (preliminary),
text_ct (corrected), status and fallback.json (a transcript that does not parse falls back to
the preliminary, then to the teacher's: counted, never silent).

Decoding options come from the library's DecodeOptions (paper §4.2: sampling, top-k 40,
top-p 0.9, temperature 0.1, at most 1024 tokens), or from a conf/decode_cor*.yaml given as
--config; `zero_shot: true` decodes with the LoRA adapter disabled (paper Table 3 (h)).
"""
from sepalm_espnet.corrector.generate import CorrectorGenerator, DecodeOptions, correct_units_file
from sepalm_espnet.data.kaldi_dir import read_key_file
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--train_config", help="the corrector's config.yaml (default: beside --model_file)")
    parser.add_argument("--model_file", required=True, help="trained weights (.pth)")
    parser.add_argument("--units", required=True, help="Kaldi text `key 12 45 7` (stage 6)")
    parser.add_argument("--teacher_text", help="fallback transcripts (Whisper on the separated speech)")
    parser.add_argument("--zero_shot", type=cli.str2bool, default=False, help="base LM only: LoRA adapter disabled")
    cli.add_decoder_options(parser, DecodeOptions)
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)

    def work():
        options = cli.options_from_args(args, DecodeOptions)
        generator = CorrectorGenerator.from_files(args.train_config, args.model_file, args.device,
                                                  zero_shot=args.zero_shot, **vars(options))
        correct_units_file(generator, args.units, args.output_dir, args.teacher_text, read_key_file(args.key_file))

    cli.run_main("cor_inference", work)


if __name__ == "__main__":
    main()
