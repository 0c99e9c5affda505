"""Stage 9 (and stage 3 for SLM-SS) worker: codec tokens of one JOB's keys of several scps ->
<output_dir>/<name>.{ark,scp}."""
from sepalm_espnet.synthesizer.codec import CodecError, load_codec
from sepalm_espnet.synthesizer.token_io import tokenize_wav_scp
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--codec", required=True,
                        help="DAC release tag (16khz, 24khz, 44khz) or weights file, or an EnCodec dir (transformers)")
    cli.add_scp_outputs(parser, "token file stem")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances of similar length encoded together")
    parser.add_argument("--n_codebooks", type=int, default=None, help="keep the first Q codebooks (default: all)")
    cli.add_job_options(parser)
    return parser


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    outputs = cli.scp_outputs(parser, args)

    def work():
        codec = load_codec(args.codec, args.n_codebooks, args.device)
        for wav_scp, stem in outputs:
            tokenize_wav_scp(codec, wav_scp, stem.parent / f"{stem.name}.ark", stem.parent / f"{stem.name}.scp",
                             args.key_file, args.batch_size)

    cli.run_main("codec_tokenize", work, (ValueError, OSError, CodecError))


if __name__ == "__main__":
    main()
