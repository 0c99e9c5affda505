"""Stage 5 worker: Whisper greedy transcripts (the corrector's distillation targets) of one JOB's
keys of several scps at once, e.g. the estimates and their matched clean references:

    python -m sepalm_espnet.bin.asr_teacher --backend faster_whisper --model $SEPALM_WHISPER_BASE \\
        --wav_scp decode/test/wav.scp decode/test/ref.scp --output_names text_pt text_ct \\
        --key_file keys.1.scp --output_dir teacher/logdir/output.1
"""
from sepalm_espnet.corrector.asr_teacher import ASR_TEACHERS, MAX_TOKENS, build_asr_teacher, transcribe_scp
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--backend", required=True, choices=sorted(ASR_TEACHERS))
    parser.add_argument("--model", required=True, help="whisper: name or .pt path; faster_whisper: CTranslate2 dir")
    cli.add_scp_outputs(parser, "Kaldi text")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances per teacher call")
    parser.add_argument("--max_tokens", type=int, default=MAX_TOKENS,
                        help="text tokens per 30 s window; a decoding that reaches it is marked length_limit")
    cli.add_job_options(parser)
    return parser


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    outputs = cli.scp_outputs(parser, args)

    def work():
        teacher = build_asr_teacher(args.backend, args.model, args.device, max_tokens=args.max_tokens)
        for wav_scp, output in outputs:
            transcribe_scp(teacher, wav_scp, output, args.key_file, args.batch_size)

    cli.run_main("asr_teacher", work)


if __name__ == "__main__":
    main()
