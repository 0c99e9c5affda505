"""Cascaded baselines (paper Table 3): Whisper N-best, then a text LM's generative error correction.

(f) the LM zero-shot:
    python -m sepalm_espnet.bin.cascade_correct --backend faster_whisper --model $SEPALM_WHISPER_BASE \\
        --nbest 3 --lm exp/lm/llama --wav_scp exp/sep/decode/test/wav.scp --key_file keys.1.scp \\
        --output_dir exp/cor/decode_cascade_llama/test/logdir/output.1
(e) the LM fine-tuned (bin/ger_train): `--lm_train_config exp/ger/config.yaml --lm_model_file
    exp/ger/valid.loss.best.pth` instead of `--lm`.
Training data of (e): `--nbest_only true` writes only the N-best lists (no LM) of a set's estimates.
`--nbest_scp DIR/nbest` instead of --wav_scp (and --backend/--model) corrects N-best lists already
written, e.g. one test-set N-best run shared by (e) and (f).
Writes text_pt (1-best), text_ct (LM-corrected), nbest (`key hyp1 ||| hyp2 ||| hyp3`), status and
fallback.json, as cor_inference does (the recipe's job merger joins JOB splits, nbest included).
"""
from sepalm_espnet.corrector.cascade import (
    NBEST_ASRS,
    GerCorrector,
    GerDecodeOptions,
    build_nbest_asr,
    correct_nbests,
    nbest_scp,
    read_nbests,
    write_nbests,
)
from sepalm_espnet.utils.cli import add_config_option, add_dataclass_options, add_job_options, parse_args, run_main
from sepalm_espnet.utils.cli import standard_parser, str2bool


def build_parser():
    parser = standard_parser(__doc__)
    parser.add_argument("--backend", choices=sorted(NBEST_ASRS), help="N-best ASR (with --wav_scp)")
    parser.add_argument("--model", help="whisper: name or .pt path; faster_whisper: CTranslate2 dir")
    parser.add_argument("--nbest", type=int, default=3, help="hypotheses = beam width")
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--wav_scp", help="audio to transcribe (the separator's estimates)")
    inputs.add_argument("--nbest_scp", help="N-best lists already written (an `nbest` file)")
    parser.add_argument("--nbest_only", type=str2bool, default=False, help="write the N-best lists only, no LM")
    parser.add_argument("--lm", help="(f) local transformers causal LM directory (with its tokenizer)")
    parser.add_argument("--lm_dtype", default="float32", help="weights of --lm as loaded")
    parser.add_argument("--lm_train_config", help="(e) config.yaml of bin/ger_train")
    parser.add_argument("--lm_model_file", help="(e) its checkpoint, e.g. valid.loss.best.pth")
    add_dataclass_options(parser, GerDecodeOptions)
    add_config_option(parser)
    add_job_options(parser, device=False)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    return parser


def run(parser, args):
    fine_tuned, zero_shot = args.lm_model_file is not None, args.lm is not None
    if args.nbest_only == (fine_tuned or zero_shot) or (fine_tuned and zero_shot):
        parser.error("give --lm (f), or --lm_model_file (e), or --nbest_only true")
    if args.wav_scp and (args.backend is None or args.model is None):
        parser.error("--wav_scp needs --backend and --model")
    options = dict(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    corrector = None
    if fine_tuned:
        corrector = GerCorrector.from_trained(args.lm_train_config, args.lm_model_file, args.device, **options)
    elif zero_shot:
        corrector = GerCorrector.from_pretrained(args.lm, args.device, args.lm_dtype, **options)
    if args.wav_scp:
        asr = build_nbest_asr(args.backend, args.model, args.nbest, args.device)
        nbests = nbest_scp(asr, args.wav_scp, args.key_file, args.batch_size)
    else:
        nbests = read_nbests(args.nbest_scp, args.key_file)
    if corrector is None:
        write_nbests(nbests, args.output_dir)
    else:
        correct_nbests(corrector, nbests, args.output_dir)


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv)
    run_main("cascade_correct", lambda: run(parser, args))


if __name__ == "__main__":
    main()
