"""Speech scoring of per-speaker files: WER (vs. the teacher's clean transcript and the ground truth)
and SIM. Stage 14 scores the flat layout through bin/score_systems.py; this is for other layouts.

    python -m sepalm_espnet.bin.score_speech --speech_scps out/spk1/speech.scp out/spk2/speech.scp \\
        --ref_dir dump/raw/test --permutation exp/sep/decode/test/score/permutation \\
        --teacher_texts exp/asr/test/text_ct_spk1 exp/asr/test/text_ct_spk2 \\
        --asr_backend faster_whisper --asr_model tools/models/whisper-base-ct2 \\
        --sim_backend resemblyzer --key_file keys.1.scp --out_dir exp/x/score_speech/test/split.1
Merge the JOB splits (pools the error, word and similarity counts):
    python -m sepalm_espnet.bin.score_speech --out_dir exp/x/score_speech/test --merge_dirs split.1 split.2
Writes text_hyp_spk<n>, sim and speech_summary.json (see sepalm_espnet.metrics.speech).
"""
from __future__ import annotations

import argparse
import logging
import sys

from sepalm_espnet.corrector.asr_teacher import ASR_TEACHERS, build_asr_teacher
from sepalm_espnet.metrics.speaker import SPEAKER_ENCODERS, build_speaker_encoder
from sepalm_espnet.metrics.speech import merge_speech_scores, score_speech


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--speech_scps", nargs="+", help="output speech, one scp per estimate (estimate order)")
    parser.add_argument("--ref_dir", help="reference dir: spk<n>.scp, optional text_spk<n>")
    parser.add_argument("--permutation", help="`key p1 p2` file from score_separation")
    parser.add_argument("--teacher_texts", nargs="+", help="teacher transcripts of the references, estimate order")
    parser.add_argument("--hyp_texts", nargs="+", help="transcripts of the output speech made elsewhere (no ASR run)")
    parser.add_argument("--asr_backend", choices=sorted(ASR_TEACHERS), help="transcribe with this Whisper backend")
    parser.add_argument("--asr_model", help="whisper: name or .pt; faster_whisper: CTranslate2 dir")
    parser.add_argument("--sim_backend", choices=sorted(SPEAKER_ENCODERS), help="speaker encoder for SIM")
    parser.add_argument("--sim_model", help="wavlm: model dir or hub id")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--key_file", help="score only these keys (a JOB split)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--merge_dirs", nargs="+", help="merge these split dirs instead of scoring")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.merge_dirs:
            merge_speech_scores(args.merge_dirs, args.out_dir)
            return
        if not (args.speech_scps and args.ref_dir and args.permutation):
            parser.error("give --speech_scps, --ref_dir and --permutation, or --merge_dirs")
        teacher = build_asr_teacher(args.asr_backend, args.asr_model, args.device) if args.asr_backend else None
        encoder = build_speaker_encoder(args.sim_backend, args.sim_model, args.device) if args.sim_backend else None
        score_speech(
            args.speech_scps, args.ref_dir, args.permutation, args.out_dir, teacher=teacher,
            hyp_texts=args.hyp_texts, teacher_texts=args.teacher_texts, encoder=encoder,
            key_file=args.key_file, batch_size=args.batch_size,
        )
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"score_speech: {exc}")


if __name__ == "__main__":
    main()
