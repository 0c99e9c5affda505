"""Stage 9 worker: the codec's own decoding of the references' tokens, for one JOB.

The oracle ladder's top rung: no synthesizer over this codec can sound better than this.
Writes <output_dir>/wavs/<key>.wav (each as long as its --wav_scp entry), speech.scp, rtf.json.
"""
from sepalm_espnet.synthesizer.codec import CodecError, load_codec
from sepalm_espnet.synthesizer.resynthesize import ResynthesisError, codec_resynthesis_scp
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--codec", required=True,
                        help="DAC release tag (16khz) or weights file, or an EnCodec dir: the one that made the tokens")
    parser.add_argument("--tokens", required=True, help="token scp (stage 9's ref_tokens.scp)")
    parser.add_argument("--wav_scp", required=True, help="the audio the tokens were made from: each output gets its length")
    cli.add_job_options(parser)
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)

    def work():
        codec = load_codec(args.codec, device=args.device)
        codec_resynthesis_scp(codec, args.tokens, args.wav_scp, args.output_dir, args.key_file)

    cli.run_main("codec_resynthesis", work, (ValueError, OSError, CodecError, ResynthesisError))


if __name__ == "__main__":
    main()
