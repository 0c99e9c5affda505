"""Stage 5: Whisper greedy transcripts (knowledge-distillation targets), one JOB's keys.

Separated speech, each estimate to its own text:
    python -m sepalm_espnet.bin.asr_teacher --backend faster_whisper --model $SEPALM_WHISPER_BASE \\
        --wav_scp exp/sep/decode/train/spk1.scp exp/sep/decode/train/spk2.scp \\
        --output exp/asr/train/text_pt_spk1 exp/asr/train/text_pt_spk2 --key_file keys.1.scp
Clean references, written in the estimates' speaker order (text_ct_spk<n> is the reference
matched to estimate n by the scoring module's permutation file):
    python -m sepalm_espnet.bin.asr_teacher --backend whisper --model tiny \\
        --wav_scp data/train/spk1.scp data/train/spk2.scp --permutation exp/sep/decode/train/permutation \\
        --output exp/asr/train/text_ct_spk1 exp/asr/train/text_ct_spk2
"""
import argparse
import logging

from sepalm_espnet.corrector.asr_teacher import (
    ASR_TEACHERS,
    build_asr_teacher,
    transcribe_references,
    transcribe_scp,
)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", required=True, choices=sorted(ASR_TEACHERS))
    parser.add_argument(
        "--model", required=True, help="whisper: name or .pt path; faster_whisper: CTranslate2 dir"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--wav_scp", required=True, nargs="+", help="audio scps (references if --permutation)"
    )
    parser.add_argument("--output", required=True, nargs="+", help="one Kaldi text per --wav_scp")
    parser.add_argument(
        "--permutation", help="`key p1 p2` file: write the outputs in estimate order"
    )
    parser.add_argument("--key_file", help="transcribe only these keys (a JOB split)")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances per teacher call")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    )
    if len(args.wav_scp) != len(args.output):
        parser.error(f"{len(args.wav_scp)} --wav_scp but {len(args.output)} --output")

    teacher = build_asr_teacher(args.backend, args.model, args.device)
    if args.permutation:
        transcribe_references(
            teacher, args.wav_scp, args.output, args.permutation, args.key_file, args.batch_size
        )
    else:
        for wav_scp, output in zip(args.wav_scp, args.output):
            transcribe_scp(teacher, wav_scp, output, args.key_file, args.batch_size)


if __name__ == "__main__":
    main()
