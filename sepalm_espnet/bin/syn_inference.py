"""Stage 11: refined speech s* from Ŝ's DAC tokens and the corrected text, with a trained synthesizer.

Writes <output_dir>/wavs/<key>.wav (16-bit, the codec's rate, each as long as its --wav_scp
entry), a sorted speech.scp and rtf.json (sepalm_espnet.metrics.rtf's record, component
"synthesizer"; JOB merges add up).
`--merge_dirs D1 D2 ... --output_dir D` joins JOB directories instead.
"""
import argparse
import logging
import sys

from sepalm_espnet.data.audio import AudioError
from sepalm_espnet.data.kaldi_dir import DataDirError
from sepalm_espnet.synthesizer.codec import CodecError
from sepalm_espnet.synthesizer.resynthesize import ResynthesisError, Resynthesizer, merge_outputs, synthesize_scp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--merge_dirs", nargs="+", default=None, help="JOB output directories to join")
    parser.add_argument("--train_config", help="the synthesizer's config.yaml (it carries the token list)")
    parser.add_argument("--model_file", help="the synthesizer's weights (.pth)")
    parser.add_argument("--codec", help="DAC release tag (16khz) or weights file: the one stage 9 tokenized with")
    parser.add_argument("--est_tokens", help="token scp of the separated estimates Ŝ")
    parser.add_argument("--wav_scp", help="the separated estimates: each output gets its length")
    parser.add_argument("--phonemes", default=None, help="`key phonemes` text (AR+NAR, masked with condition phoneme)")
    parser.add_argument("--semantic", default=None, help="`key u1 u2 ...` units (masked with condition semantic)")
    parser.add_argument("--key_file", default=None, help="only these keys (a JOB split)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    parser.add_argument("--top_k", type=int, default=0, help="0: no top-k filter")
    parser.add_argument("--top_p", type=float, default=1.0, help="1.0: no nucleus filter")
    parser.add_argument("--guidance_scale", type=float, default=1.0, help="classifier-free guidance; 1: off")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="masked: rounds per codebook")
    parser.add_argument("--max_length_ratio", type=float, default=1.5, help="AR+NAR: longest T'' / T'")
    parser.add_argument("--seed", type=int, default=0, help="reset before every utterance")
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--log_level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        if args.merge_dirs:
            merge_outputs(args.merge_dirs, args.output_dir)
            return
        missing = [name for name in ("train_config", "model_file", "codec", "est_tokens", "wav_scp") if not getattr(args, name)]
        if missing:
            parser.error(f"synthesis needs --{', --'.join(missing)}")
        resynthesizer = Resynthesizer.from_files(
            args.train_config, args.model_file, args.codec, "cuda" if args.ngpu > 0 else "cpu",
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, guidance_scale=args.guidance_scale,
            steps=args.steps, max_length_ratio=args.max_length_ratio, seed=args.seed,
        )
        synthesize_scp(resynthesizer, args.est_tokens, args.wav_scp, args.output_dir,
                       args.phonemes, args.semantic, args.key_file)
    except (AudioError, CodecError, DataDirError, ResynthesisError) as exc:
        sys.exit(f"syn_inference: {exc}")


if __name__ == "__main__":
    main()
