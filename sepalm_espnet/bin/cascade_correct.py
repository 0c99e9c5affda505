"""Cascaded baseline (paper Table 3 (f): the LM zero-shot): Whisper N-best, then a text LM's
generative error correction.

    python -m sepalm_espnet.bin.cascade_correct --backend faster_whisper --model $SEPALM_WHISPER_BASE \\
        --nbest 3 --lm exp/lm/llama --wav_scp exp/sep/decode/test/wav.scp --key_file keys.1.scp \\
        --output_dir exp/cor/decode_cascade_llama/test/logdir/output.1
Writes text_pt (1-best), text_ct (LM-corrected), nbest (`key hyp1 ||| hyp2 ||| hyp3`), status and
fallback.json, as cor_inference does (the recipe's job merger joins JOB splits, nbest included).
"""
import argparse
import logging
import sys

from sepalm_espnet.corrector.cascade import NBEST_ASRS, GerCorrector, build_nbest_asr, correct_nbests, nbest_scp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", required=True, choices=sorted(NBEST_ASRS))
    parser.add_argument("--model", required=True, help="whisper: name or .pt path; faster_whisper: CTranslate2 dir")
    parser.add_argument("--nbest", type=int, default=3, help="hypotheses = beam width")
    parser.add_argument("--lm", required=True, help="local transformers causal LM directory (with its tokenizer)")
    parser.add_argument("--lm_dtype", default="float32")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="longest LM answer")
    parser.add_argument("--wav_scp", required=True)
    parser.add_argument("--key_file", help="only these keys (a JOB split)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--batch_size", type=int, default=8, help="utterances per ASR and LM call")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        asr = build_nbest_asr(args.backend, args.model, args.nbest, args.device)
        corrector = GerCorrector(args.lm, args.device, args.batch_size, args.max_new_tokens, args.lm_dtype)
        nbests = nbest_scp(asr, args.wav_scp, args.key_file, args.batch_size)
        correct_nbests(corrector, nbests, args.output_dir)
    except ValueError as exc:
        sys.exit(f"cascade_correct: {exc}")


if __name__ == "__main__":
    main()
