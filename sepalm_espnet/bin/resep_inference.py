"""Table 3 (a) worker: each speaker re-separated from the mixture, conditioned on that speaker's
corrected phonemes, for one JOB's `<utt>_spk<n>` keys.

Writes <output_dir>/wavs/<utt>_spk<n>.wav (float WAV at the model's rate) and speech.scp.
"""
from sepalm_espnet.separator.reseparation_inference import ReseparationInference, ReseparationOptions, reseparate_scp
from sepalm_espnet.utils import cli


def get_parser():
    parser = cli.standard_parser(__doc__)
    parser.add_argument("--train_config", default=None, help="default: config.yaml beside --model_file")
    parser.add_argument("--model_file", required=True, help="trained re-separator weights (.pth or .safetensors)")
    parser.add_argument("--mix_scp", required=True, help="mixtures, keyed <utt> (a data dir's wav.scp) or <utt>_spk<n>")
    parser.add_argument("--phonemes", required=True, help="G2P of the corrected transcripts, keyed <utt>_spk<n>")
    cli.add_decoder_options(parser, ReseparationOptions)
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)

    def work():
        reseparator = ReseparationInference.from_files(args.train_config, args.model_file, args.device)
        reseparate_scp(reseparator, args.mix_scp, args.phonemes, args.output_dir, args.key_file,
                       cli.options_from_args(args, ReseparationOptions))

    cli.run_main("resep_inference", work)


if __name__ == "__main__":
    main()
