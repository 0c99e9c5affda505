"""Stage 5 worker: Whisper greedy transcripts (the corrector's distillation targets) of one JOB's
keys of several scps at once, e.g. the estimates and their matched clean references:

    python -m sepalm_espnet.bin.asr_teacher --backend faster_whisper --model $SEPALM_WHISPER_BASE \\
        --wav_scp decode/test/wav.scp decode/test/ref.scp --output_names text_pt text_ct \\
        --key_file keys.1.scp --output_dir teacher/logdir/output.1
"""
from pathlib import Path

from sepalm_espnet.corrector.asr_teacher import ASR_TEACHERS, build_asr_teacher, transcribe_scp
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--backend", required=True, choices=sorted(ASR_TEACHERS))
    parser.add_argument("--model", required=True, help="whisper: name or .pt path; faster_whisper: CTranslate2 dir")
    parser.add_argument("--wav_scp", required=True, nargs="+", help="audio scps, all with the keys of --key_file")
    parser.add_argument("--output_names", required=True, nargs="+", help="one Kaldi text name per --wav_scp")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances per teacher call")
    cli.add_job_options(parser)
    return parser


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    if len(args.wav_scp) != len(args.output_names):
        parser.error(f"{len(args.wav_scp)} --wav_scp but {len(args.output_names)} --output_names")

    def work():
        teacher = build_asr_teacher(args.backend, args.model, args.device)
        for wav_scp, name in zip(args.wav_scp, args.output_names):
            transcribe_scp(teacher, wav_scp, Path(args.output_dir) / name, args.key_file, args.batch_size)

    cli.run_main("asr_teacher", work)


if __name__ == "__main__":
    main()
