"""Stage 11 worker: refined speech s* from ŝ's DAC tokens and the corrected text, for one JOB.

Writes <output_dir>/wavs/<key>.wav (16-bit, the codec's rate, each as long as its --wav_scp
entry), speech.scp and rtf.json (component "synthesizer"; the job merger adds them up).
Decoding options are the library's SynthesisOptions, or a conf/decode_syn*.yaml as --config.
"""
from sepalm_espnet.synthesizer.codec import CodecError
from sepalm_espnet.synthesizer.resynthesize import ResynthesisError, Resynthesizer, SynthesisOptions, synthesize_scp
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--train_config", required=True, help="the synthesizer's config.yaml (it carries the token list)")
    parser.add_argument("--model_file", required=True, help="the synthesizer's weights (.pth)")
    parser.add_argument("--codec", required=True, help="DAC release tag (16khz) or weights file: the one stage 9 used")
    parser.add_argument("--est_tokens", required=True, help="token scp of the separated estimates ŝ")
    parser.add_argument("--wav_scp", required=True, help="the separated estimates: each output gets its length")
    parser.add_argument("--phonemes", default=None, help="`key phonemes` text (AR+NAR, masked with condition phoneme)")
    parser.add_argument("--semantic", default=None, help="`key u1 u2 ...` units (masked with condition semantic)")
    cli.add_decoder_options(parser, SynthesisOptions)
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)

    def work():
        options = cli.options_from_args(args, SynthesisOptions)
        resynthesizer = Resynthesizer.from_files(args.train_config, args.model_file, args.codec, args.device,
                                                 options=options)
        synthesize_scp(resynthesizer, args.est_tokens, args.wav_scp, args.output_dir,
                       args.phonemes, args.semantic, args.key_file)

    cli.run_main("syn_inference", work, (ValueError, OSError, CodecError, ResynthesisError))


if __name__ == "__main__":
    main()
